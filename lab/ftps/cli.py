"""`ftlab server`, `ftlab client`, `ftlab ca`: the lab's FTPS endpoints and its PKI on the command line.

    ftlab server --listen 0.0.0.0:2121 --root /srv/ftp --user alice:secret --cert s.pem --key s.key
    ftlab client ftp://alice:secret@10.0.0.2:2121/file.bin get -o file.bin --security tls --data epsv
    ftlab ca init ./pki ; ftlab ca issue ./pki --server srv --ip 10.0.0.2 ; ftlab ca issue ./pki --client alice

The client exits with a distinct code per failure stage (EXIT_CODES, also in `ftlab client --help`
and lab/ftps/README.md) and always prints a one-line reason; `--json` prints one JSON object instead,
for the matrix runner. Nothing here prints a traceback: bad input is an InputError (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lab.ftps.errors import InputError, LabError, Problem
from lab.ftps.grammar import is_decimal, loggable
from lab.ftps.modes import DATA_MODES, SECURITY_MODES

# Client exit codes, one per failure stage of lab.ftps.client (documented in --help and README).
EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "usage": 2,           # bad arguments, URL or FTP.DATA file
    "connect": 10,        # TCP connection to the server failed, or no/invalid greeting
    "tls": 11,            # AUTH refused, TLS handshake or certificate failed, CCC failed
    "login": 12,          # USER/PASS refused (or a policy forbids this login)
    "data-setup": 13,     # PBSZ/PROT/TYPE/PASV/EPSV/PORT/EPRT refused or unparseable
    "data-connect": 14,   # the data connection could not be made or accepted (or its TLS)
    "transfer": 15,       # RETR/STOR/LIST refused, or the data stream ended early / failed
    "verify": 16,         # the transfer ended but its size or checksum is wrong
    "internal": 3,        # anything else the lab itself could not do
}
EXIT_HELP = "\n".join(f"  {code:3}  {stage}" for stage, code in sorted(EXIT_CODES.items(), key=lambda x: x[1]))


def register(sub: argparse._SubParsersAction) -> None:
    _register_server(sub)
    _register_client(sub)
    _register_ca(sub)


# -- shared parsing -------------------------------------------------------------------------------

def parse_hostport(text: str, what: str, default_port: int | None = None) -> tuple[str, int]:
    """ADDR:PORT (or [v6]:PORT, or ADDR when a default port exists) -> (addr, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    host = host.strip("[]")
    if not port:
        if default_port is None:
            raise InputError([Problem("<command line>", 0, what, f"{text!r} is not ADDR:PORT")])
        return (host or "0.0.0.0"), default_port
    if not is_decimal(port) or not 0 <= int(port) <= 65535:
        raise InputError([Problem("<command line>", 0, what, f"{text!r}: port must be 0..65535")])
    return (host or "0.0.0.0"), int(port)


def parse_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise InputError([Problem("<command line>", 0, "--user", "want NAME:PASSWORD (the password is never logged)")])
    return name, password


def _existing(path: Path | None, what: str) -> Path | None:
    if path is None:
        return None
    if not path.exists():
        raise InputError([Problem(str(path), 0, what, "no such file")])
    if not path.is_file():
        raise InputError([Problem(str(path), 0, what, "not a regular file (a directory, FIFO or device)")])
    return path


def check_tls_inputs(cert: Path | None, key: Path | None, ca: Path | None, keyring: str | None) -> None:
    """Every TLS file a command was given, checked before OpenSSL sees it: each is a regular PEM
    file of the right kind and the key is the certificate's; else one InputError (exit 2) naming
    the file and what is wrong, never OpenSSL's traceback or a hang on a FIFO. keyring is the
    KEYRING statement (a PEM bundle, a folder of them, or *AUTH*/* = the --ca file)."""
    from lab.ftps import pki, tls

    if cert is not None:
        pki.check_pair(cert, key or cert)
    for path in tls.keyring_files(keyring, ca):
        pki.load_certificates(path, "--ca" if ca is not None and path == Path(ca) else "KEYRING")


# -- server ---------------------------------------------------------------------------------------

def _register_server(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("server", help="run the lab's FTPS server in the foreground",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run the lab's FTP/FTPS server in the foreground. Every command and "
                       "reply is logged with a timestamp (passwords masked). Stop it with Ctrl-C or SIGTERM.",
                       epilog="Security, passive range and the other z/OS statements come from --ftpdata "
                       "(FTP.DATA syntax: one statement a line, ';' comments), e.g.\n"
                       "  SECURE_FTP REQUIRED\n  PASSIVEDATAPORTS (60000,60100)\n  TLSPORT 990")
    p.add_argument("--listen", required=True, metavar="ADDR:PORT", help="control-connection address")
    p.add_argument("--root", required=True, type=Path, help="directory the users see as /")
    p.add_argument("--ftpdata", type=Path, metavar="FILE", help="z/OS FTP.DATA-style server statements")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                   help="a user (repeatable); the password is never logged")
    p.add_argument("--cert", type=Path, metavar="FILE", help="server certificate (PEM) for TLS")
    p.add_argument("--key", type=Path, metavar="FILE", help="its private key (PEM)")
    p.add_argument("--ca", type=Path, metavar="FILE",
                   help="CA certificate(s) trusted for client certificates (SECURE_LOGIN)")
    p.add_argument("--tls-listen", metavar="ADDR:PORT",
                   help="also listen for implicit TLS here (z/OS TLSPORT; needs --cert/--key; "
                   "SECUREIMPLICITZOS in --ftpdata picks the model). A --listen port equal to TLSPORT "
                   "is implicit as well")
    p.add_argument("--keytab", type=Path, metavar="FILE",
                   help="Kerberos keytab with ftp/HOST keys: AUTH GSSAPI (EXTENSIONS AUTH_GSSAPI; "
                   "default: $KRB5_KTNAME; the realm from $KRB5_CONFIG)")
    p.add_argument("--quiet", action="store_true", help="log only sessions and errors, not every command")
    p.set_defaults(func=cmd_server)


def cmd_server(args: argparse.Namespace) -> int:
    from lab.ftps.config import ServerConfig, check_files, parse_ftpdata
    from lab.ftps.gss import KerberosError
    from lab.ftps.server import FTPServer
    from lab.ftps.tls import TLSSetupError

    listen = parse_hostport(args.listen, "--listen")
    if not args.root.is_dir():
        raise InputError([Problem(str(args.root), 0, "--root", "not a directory")])
    if (args.cert is None) != (args.key is None):
        raise InputError([Problem("<command line>", 0, "--cert/--key", "give both or neither")])
    config = parse_ftpdata(args.ftpdata, "server") if args.ftpdata else ServerConfig()
    check_files(config, args.ftpdata, cert=args.cert, key=args.key, ca=args.ca)   # before listening
    check_tls_inputs(args.cert, args.key, args.ca, config.KEYRING)
    users = dict(parse_user(u) for u in args.user)
    if not users:
        raise InputError([Problem("<command line>", 0, "--user", "give at least one NAME:PASSWORD")])
    tls_listen = parse_hostport(args.tls_listen, "--tls-listen") if args.tls_listen else None

    log = _Log(sys.stdout, quiet=args.quiet)
    try:
        server = FTPServer(config, args.root, users, cert=args.cert, key=args.key, ca=args.ca,
                           listen=listen, tls_listen=tls_listen, log=log,
                           keytab=_existing(args.keytab, "--keytab"))
    except OSError as exc:
        raise LabError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    except KerberosError as exc:
        raise InputError([Problem(str(args.keytab), 0, "--keytab", exc.reason)]) from None
    except TLSSetupError as exc:        # what check_tls_inputs cannot see (e.g. a key OpenSSL refuses)
        raise InputError([Problem(exc.path, 0, "--cert/--key/--ca", exc.reason)]) from None
    except ValueError as exc:
        field = "--tls-listen" if "implicit TLS listener" in str(exc) else "--listen"
        raise InputError([Problem("<command line>", 0, field, str(exc))]) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    where = "{}:{}".format(*server.address)
    if server.listen_implicit:
        model = "clear 220 first" if config.SECUREIMPLICITZOS else "handshake first"
        where += f" (implicit TLS: TLSPORT {config.TLSPORT}, {model})"
    if server.tls_address and server.tls_address != server.address:
        where += " and {}:{} (implicit TLS)".format(*server.tls_address)
    log.event(f"listening on {where}, root {args.root}, users {', '.join(sorted(users))}")
    if server.attls is not None:
        log.event(f"TLSMECHANISM ATTLS: TLS as {server.attls.source} says ({len(server.attls.rules)} rules; "
                  f"KEYRING, CIPHERSUITE and TLSTIMEOUT are ignored)")
        for line in server.attls.ignored_text():
            log.event(line)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log.event("stopping")
        server.close()
    return 0


class _Log:
    """The server's log, called with each event of lab.ftps.server: one line per command, reply
    and session event, with a UTC timestamp. The server masks passwords; grammar.loggable is applied
    again so that no log line can ever carry one (nor a control character)."""

    def __init__(self, stream, quiet: bool = False):
        self.stream, self.quiet = stream, quiet
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        direction = event.get("dir", "info")
        if self.quiet and direction != "info":
            return
        line = str(event.get("line", ""))
        if direction == "C>S":
            line = "> " + loggable(line)
        elif direction == "S>C":
            line = "< " + line
        self._write(event.get("ts", time.time()), f"[{event.get('session', '-')} {event.get('peer', '')}] {line}")

    def event(self, text: str) -> None:
        self._write(time.time(), f"[-] {text}")

    def _write(self, ts: float, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
        with self._lock:
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()


# -- client ---------------------------------------------------------------------------------------

def _register_client(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="run one FTP/FTPS transfer with the lab's client",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Connect, log in, do one transfer, print bytes, SHA-256 and MB/s.",
                       epilog="URL: ftp://[USER[:PASSWORD]@]HOST[:PORT]/PATH (ftps:// = implicit TLS). "
                       "The password may also come from --password or $FTLAB_PASSWORD.\n\n"
                       f"exit codes (stage of the first failure):\n{EXIT_HELP}")
    p.add_argument("url", help="ftp://user:password@host:port/path")
    _client_options(p)
    ops = p.add_subparsers(dest="op", metavar="get|put|ls|fxp", required=True)
    g = ops.add_parser("get", help="download the URL's path")
    _client_options(g, suppress=True)
    g.add_argument("-o", "--output", type=Path, help="local file (default: the path's last name; - = stdout)")
    u = ops.add_parser("put", help="upload FILE to the URL's path (a path ending in / gets FILE's name)")
    u.add_argument("file", type=Path)
    _client_options(u, suppress=True)
    _client_options(ops.add_parser("ls", help="list the URL's path (LIST)"), suppress=True)
    x = ops.add_parser("fxp", help="three-way transfer: copy the URL's file to DEST_URL, server to server",
                       description="A three-way (proxy, FXP) transfer: PASV or EPSV on the passive server, "
                       "PORT or EPRT naming it on the other, RETR on the URL's server, STOR on DEST_URL's. "
                       "--data pasv|epsv; with protected data one server must be the TLS client: --sscn.")
    x.add_argument("dest", metavar="DEST_URL", help="ftp://user:password@host:port/path of the copy")
    x.add_argument("--passive", choices=("src", "dst"), default="dst",
                   help="the server that listens (PASV/EPSV); the other connects (default dst)")
    x.add_argument("--sscn", choices=("src", "dst"),
                   help="the server told SSCN ON: the TLS client of the protected data connection")
    _client_options(x, suppress=True)
    p.set_defaults(func=cmd_client)


def _client_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """The client's options; also accepted after get/put/ls (suppress: no defaults there)."""
    if suppress:
        p.argument_default = argparse.SUPPRESS
    p.add_argument("--security", choices=SECURITY_MODES,
                   help="plain | tls (AUTH TLS, PBSZ 0, PROT P) | tls-ccc (tls, then CCC after login) | "
                   "implicit (handshake first, port 990) | implicit-zos (clear 220, then handshake) | "
                   "gssapi (AUTH GSSAPI, ADAT, MIC-protected commands, PROT P; Kerberos ticket from "
                   "KRB5CCNAME) | gssapi-ccc (gssapi, then CCC after login). "
                   "Default: implicit for ftps://, else as --ftpdata says (plain)")
    p.add_argument("--data", choices=DATA_MODES,
                   help="data-connection mode (default: the z/OS rule from --ftpdata: EPSV4 TRUE tries "
                   "EPSV first, then FWFRIENDLY TRUE = PASV, FALSE = PORT)")
    p.add_argument("--ascii", action="store_true",
                   help="get/put as TYPE A: CRLF line ends on the wire, LF in the local file (default TYPE I)")
    p.add_argument("--ftpdata", type=Path, metavar="FILE", help="z/OS FTP.DATA-style client statements")
    p.add_argument("--ca", type=Path, metavar="FILE", help="CA certificate(s) to verify the server with")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    p.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (PEM)")
    p.add_argument("--key", type=Path, metavar="FILE", help="its private key (PEM)")
    p.add_argument("--password", help="password (instead of the URL or $FTLAB_PASSWORD)")
    p.add_argument("--timeout", type=float,
                   help="seconds for connect+TLS+login and for each reply (MYOPENTIME/INACTTIME; default 30/120)")
    p.add_argument("--verbose", "-v", action="store_true", help="print the control-connection transcript")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts); exit code as usual")
    p.argument_default = None


@dataclass
class Target:
    scheme: str
    host: str
    port: int | None
    user: str
    password: str
    path: str


def parse_url(url: str, password: str | None = None) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("ftp", "ftps") or not parts.hostname:
        raise InputError([Problem("<command line>", 0, "URL",
                                  f"{url!r} is not ftp://[user[:password]@]host[:port]/path")])
    try:
        port = parts.port
    except ValueError:
        raise InputError([Problem("<command line>", 0, "URL", f"{url!r}: bad port")]) from None
    user = unquote(parts.username) if parts.username else "anonymous"
    pw = password if password is not None else (
        unquote(parts.password) if parts.password is not None else os.environ.get("FTLAB_PASSWORD", ""))
    path = unquote(parts.path)
    for value, part in ((user, "user"), (pw, "password"), (path, "path")):
        if any(c in value for c in "\r\n\x00"):
            # %0d%0a in a path would end RETR early and smuggle a second command after it
            raise InputError([Problem("<command line>", 0, "URL", f"CR, LF or NUL in the {part}")])
    return Target(parts.scheme, parts.hostname, port, user, pw, path.removeprefix("/"))


def cmd_client(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        return _client(args)
    except InputError as exc:
        if args.json:
            print(json.dumps(_json_result(args, "failed", "usage", str(exc), None, started)))
            return EXIT_CODES["usage"]
        raise


def _client(args: argparse.Namespace) -> int:
    from lab.ftps.client import FTPClient, FTPError
    from lab.ftps.config import ClientConfig, check_files, parse_ftpdata

    target = parse_url(args.url, args.password)
    config = parse_ftpdata(args.ftpdata, "client") if args.ftpdata else ClientConfig()
    check_files(config, args.ftpdata, cert=args.cert, key=args.key, ca=args.ca)
    if args.timeout is not None:
        if args.timeout <= 0:
            raise InputError([Problem("<command line>", 0, "--timeout", "must be more than 0 seconds")])
        config = config.updated(MYOPENTIME=args.timeout, INACTTIME=args.timeout)
    security = args.security or ("implicit" if target.scheme == "ftps" else None)
    # what the run really used, for the JSON result (None above means: as the statements say)
    args.security = security or ("tls" if config.SECURE_MECHANISM == "TLS" else "plain")
    if (args.cert is None) != (args.key is None):
        raise InputError([Problem("<command line>", 0, "--cert/--key", "give both or neither")])
    check_tls_inputs(args.cert, args.key, args.ca, config.KEYRING)
    if args.op == "put":
        _existing(args.file, "put FILE")
    if args.op == "get" and not target.path:
        raise InputError([Problem("<command line>", 0, "URL", "get needs a file path in the URL")])
    if args.op == "fxp":
        return _fxp(args, config, security, target)

    def on_line(direction: str, line: str) -> None:
        if args.verbose and not args.json:
            mark = {"C>S": ">", "S>C": "<"}.get(direction, "*")
            print(f"{mark} {loggable(line)}", file=sys.stderr, flush=True)

    started = time.monotonic()
    client = FTPClient(config, security=security, data=args.data, ca=args.ca, cert=args.cert, key=args.key,
                       verify=False if args.insecure else None, log=on_line)
    listing = None
    try:
        with client:
            client.connect(target.host, target.port)
            client.login(target.user, target.password)
            if args.op == "get":
                out = args.output or Path(Path(target.path).name)
                # /dev/null: discard in memory and hash on the fly (hashing the file after would
                # give the SHA-256 of nothing)
                local = None if str(out) == os.devnull else ("-" if str(out) == "-" else out)
                # `-o -`: stdout may be a pipe or a file (`> file`); hashed on the fly either way (a
                # file named "-" is not there to hash after)
                result = client.get(target.path, local, ascii=args.ascii, hash_inline=True if local == "-" else None)
            elif args.op == "put":
                dest = target.path if target.path and not target.path.endswith("/") else target.path + args.file.name
                result = client.put(args.file, dest, ascii=args.ascii)
            else:
                listing = client.ls(target.path)
                result = client.last_result
            client.quit()
    except FTPError as exc:
        stage = exc.stage if exc.stage in EXIT_CODES else "internal"
        if args.json:
            print(json.dumps(_json_result(args, "failed", stage, exc.reason, exc.code, started,
                                          transcript=_transcript(client))))
        else:
            code = f" (reply {exc.code})" if exc.code else ""
            print(f"ftlab client: {stage} failed{code}: {loggable(exc.reason)}", file=sys.stderr)   # server text: no escapes
        return EXIT_CODES[stage]
    except OSError as exc:           # a local file could not be read or written
        reason = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
        if args.json:
            print(json.dumps(_json_result(args, "failed", "internal", reason, None, started,
                                          transcript=_transcript(client))))
        else:
            print(f"ftlab client: {reason}", file=sys.stderr)
        return EXIT_CODES["internal"]

    if args.json:
        print(json.dumps(_json_result(args, "ok", None, "", None, started, result, _transcript(client))))
        return 0
    if listing is not None:
        sys.stdout.write(listing)
    summary = f"{result.bytes} bytes  sha256 {result.sha256}  {result.seconds:.3f} s  {result.mbps:.1f} MB/s"
    if args.ascii and listing is None:
        summary += "  (TYPE A: bytes on the wire; the SHA-256 is of the local file)"
    to_stderr = args.op != "put" and (listing is not None or str(args.output) == "-")
    print(summary, file=sys.stderr if to_stderr else sys.stdout)
    return 0


def _transcript(client, prefix: str = "") -> list[str]:
    marks = {"C>S": ">", "S>C": "<"}
    return [f"{prefix}{marks.get(d, '*')} {loggable(line)}" for _, d, line in client.transcript]


def _fxp(args: argparse.Namespace, config, security: str | None, source: Target) -> int:
    """`ftlab client SRC_URL fxp DEST_URL`: one client, two sessions, the data from server to server."""
    from lab.ftps.client import FTPClient, FTPError
    from lab.ftps.fxp import FXP_DATA_MODES, fxp

    dest = parse_url(args.dest)
    if not source.path or not dest.path or dest.path.endswith("/"):
        raise InputError([Problem("<command line>", 0, "URL", "fxp needs a file path in both URLs")])
    if args.data not in (None, *FXP_DATA_MODES):
        raise InputError([Problem("<command line>", 0, "--data", "a three-way transfer uses pasv or epsv "
                                                                 "(the other server is told with PORT or EPRT)")])
    args.data = args.data or "pasv"
    started = time.monotonic()

    def client(side: str) -> FTPClient:
        def on_line(direction: str, line: str) -> None:
            if args.verbose and not args.json:
                mark = {"C>S": ">", "S>C": "<"}.get(direction, "*")
                print(f"[{side}] {mark} {loggable(line)}", file=sys.stderr, flush=True)
        return FTPClient(config, security=security, ca=args.ca, cert=args.cert, key=args.key,
                         verify=False if args.insecure else None, log=on_line)

    src, dst = client("src"), client("dst")

    def transcript() -> list[str]:
        return _transcript(src, "[src] ") + _transcript(dst, "[dst] ")
    try:
        with src, dst:
            for c, t in ((src, source), (dst, dest)):
                c.connect(t.host, t.port)
                c.login(t.user, t.password)
            result = fxp(src, dst, source.path, dest.path, data=args.data, passive=args.passive, sscn=args.sscn)
            src.quit()
            dst.quit()
    except FTPError as exc:
        stage = exc.stage if exc.stage in EXIT_CODES else "internal"
        if args.json:
            print(json.dumps(_json_result(args, "failed", stage, exc.reason, exc.code, started,
                                          transcript=transcript())))
        else:
            code = f" (reply {exc.code})" if exc.code else ""
            print(f"ftlab client: {stage} failed{code}: {loggable(exc.reason)}", file=sys.stderr)
        return EXIT_CODES[stage]
    if args.json:
        doc = _json_result(args, "ok", None, "", None, started, result, transcript())
        doc["fxp"] = result.to_dict()
        print(json.dumps(doc))
        return 0
    print(f"{result.bytes} bytes  {source.host} -> {dest.host} server to server ({args.data}, passive "
          f"{result.passive})  {result.seconds:.3f} s  {result.mbps:.1f} MB/s")
    return 0


def _json_result(args: argparse.Namespace, outcome: str, stage: str | None, reason: str, code: int | None,
                 started: float, result=None, transcript: list[str] | None = None) -> dict:
    return {
        "outcome": outcome,
        "stage": stage,
        "reason": reason,
        "code": code,
        "exit_code": EXIT_CODES.get(stage or "ok", 3),
        "op": args.op,
        "security": args.security,
        "data": args.data,
        "bytes": getattr(result, "bytes", 0),
        "sha256": getattr(result, "sha256", None),
        "seconds": round(getattr(result, "seconds", 0.0), 6),
        "mbps": round(getattr(result, "mbps", 0.0), 3),
        "elapsed": round(time.monotonic() - started, 6),
        "transcript": transcript or [],
    }


# -- ca -------------------------------------------------------------------------------------------

def _register_ca(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ca", help="the lab PKI: a CA, server and client certificates")
    ops = p.add_subparsers(dest="ca_op", metavar="init|issue", required=True)
    i = ops.add_parser("init", help="create the CA (DIR/ca.pem, DIR/ca.key) unless it exists")
    i.add_argument("dir", type=Path)
    i.add_argument("--name", default="FTPS Lab CA", help="the CA's common name")
    i.set_defaults(func=cmd_ca_init)
    s = ops.add_parser("issue", help="issue a server (--server) or client (--client) certificate")
    s.add_argument("dir", type=Path)
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--server", metavar="NAME", help="server certificate DIR/NAME.pem + .key")
    who.add_argument("--client", metavar="USER", help="client certificate DIR/client-USER.pem + .key (CN=USER)")
    s.add_argument("--ip", action="append", default=[], metavar="ADDR", help="server address (repeatable)")
    s.add_argument("--dns", action="append", default=[], metavar="NAME", help="server DNS name (repeatable)")
    s.add_argument("--days", type=int, default=365)
    s.set_defaults(func=cmd_ca_issue)


def cmd_ca_init(args: argparse.Namespace) -> int:
    from lab.ftps import pki

    existed = (args.dir / "ca.pem").exists()
    issued = _pki(lambda: pki.init_ca(args.dir, args.name), args.dir)
    print(f"{'kept existing' if existed else 'created'} CA {issued.cert} (key {issued.key}, mode 0600)")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    import ipaddress

    from lab.ftps import pki

    if not (args.dir / "ca.pem").exists():
        raise InputError([Problem(str(args.dir), 0, "ca", f"no CA here: run `ftlab ca init {args.dir}` first")])
    for ip in args.ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InputError([Problem("<command line>", 0, "--ip", f"{ip!r} is not an IP address")]) from None
    if args.client and (args.ip or args.dns):
        raise InputError([Problem("<command line>", 0, "--ip/--dns", "only for --server certificates")])
    if args.days < 1:
        raise InputError([Problem("<command line>", 0, "--days", "must be at least 1")])
    if args.server:
        issued = _pki(lambda: pki.issue_server(args.dir, args.server, ips=args.ip, dns=args.dns,
                                               days=args.days), args.dir)
    else:
        issued = _pki(lambda: pki.issue_client(args.dir, args.client, days=args.days), args.dir)
    print(f"issued {issued.cert} (key {issued.key}, mode 0600), fingerprint {pki.fingerprint(issued.cert)}")
    return 0


def _pki(make, directory: Path):
    try:
        return make()
    except OSError as exc:
        raise LabError(f"{exc.filename or directory}: {exc.strerror or exc}") from None
    except ValueError as exc:       # e.g. a CA file that is not PEM
        raise InputError([Problem(str(directory), 0, "ca", str(exc))]) from None
