"""The names of the ways of doing FTP and of the stages a session can fail at: one definition, used
by the client, the matrix, prediction, verdicts and reports alike."""

#: How the control and data connections are protected.
#: plain: no TLS; tls: AUTH TLS, PBSZ 0, PROT P; tls-ccc: as tls, then CCC after login (data stays
#: PROT P); implicit: port 990, handshake first; implicit-zos: port 990, a clear 220 first.
SECURITY_MODES = ("plain", "tls", "tls-ccc", "implicit", "implicit-zos")
#: The security modes whose control channel stays encrypted for the whole session (tls-ccc clears it
#: after login, plain never encrypts it): what a firewall in between can never read.
ENCRYPTED_CONTROL = ("tls", "implicit", "implicit-zos")

#: Kerberos (RFC 2228 GSSAPI): gssapi: AUTH GSSAPI, ADAT, MIC-protected commands, PBSZ, PROT P
#: (data in wrapped blocks); gssapi-ccc: as gssapi, then CCC after login (data stays PROT P). The
#: endpoints (lab/ftps/gss.py) and `ftlab client --security` speak them; the matrix runs
#: SECURITY_MODES, which they join once the lab's networks have a KDC (see lab/ftps/README.md).
KERBEROS_MODES = ("gssapi", "gssapi-ccc")
#: Every security mode the client speaks.
CLIENT_SECURITY_MODES = SECURITY_MODES + KERBEROS_MODES

#: How the data connection is set up (RFC 959 PASV/PORT, RFC 2428 EPSV/EPRT).
DATA_MODES = ("pasv", "epsv", "port", "eprt")

#: The stages of one session, in order; a failure names the first that failed.
STAGES = ("connect", "tls", "login", "data-setup", "data-connect", "transfer", "verify")
