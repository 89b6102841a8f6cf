"""The names of the ways of doing FTP and of the stages a session can fail at: one definition, used
by the client, the matrix, prediction, verdicts and reports alike."""

#: How the control and data connections are protected.
#: plain: no TLS; tls: AUTH TLS, PBSZ 0, PROT P; tls-ccc: as tls, then CCC after login (data stays
#: PROT P); implicit: port 990, handshake first; implicit-zos: port 990, a clear 220 first;
#: gssapi: Kerberos (RFC 2228: AUTH GSSAPI, ADAT, MIC-protected commands, PBSZ, PROT P, data in
#: wrapped blocks); gssapi-ccc: as gssapi, then CCC after login (data stays PROT P).
SECURITY_MODES = ("plain", "tls", "tls-ccc", "implicit", "implicit-zos", "gssapi", "gssapi-ccc")
#: The Kerberos modes: a network that runs them needs a KDC and the server a keytab (lab/ftps/kdc.py).
KERBEROS_MODES = ("gssapi", "gssapi-ccc")
#: The security modes whose control channel stays protected for the whole session (tls-ccc and
#: gssapi-ccc clear it after login, plain never protects it): what a firewall in between can never read.
ENCRYPTED_CONTROL = ("tls", "implicit", "implicit-zos", "gssapi")
#: The modes that clear the control channel after login (CCC).
CCC_MODES = ("tls-ccc", "gssapi-ccc")

#: How the data connection is set up (RFC 959 PASV/PORT, RFC 2428 EPSV/EPRT).
DATA_MODES = ("pasv", "epsv", "port", "eprt")

#: The stages of one session, in order; a failure names the first that failed.
STAGES = ("connect", "tls", "login", "data-setup", "data-connect", "transfer", "verify")
