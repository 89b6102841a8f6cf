"""A scripted FTP client on CPython's ftplib, for device tests that need exact control:
the precise command after CCC, many transfers in one session, all four data modes on IPv4.

    python ftp_driver.py HOST USER PASSWORD PATH --security plain|tls|tls-ccc --data pasv|epsv|port|eprt
                         [--count N] [--noop-after-ccc] [--timeout S]

Prints one JSON object: ok, transfers done, bytes and SHA-256 of each, error (if any).
ftplib is a third-party-grade peer here: it honours the 227 address (as z/OS does with
PASSIVEIGNOREADDR FALSE) and ccc() does the bidirectional TLS shutdown of RFC 4217.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import ssl
import sys
import time
from ftplib import FTP_TLS, error_perm, error_temp


class Client(FTP_TLS):
    """ftplib with EPSV and EPRT on IPv4 (ftplib uses them only on IPv6)."""

    data_mode = "pasv"
    trust_server_pasv_ipv4_address = True

    def makepasv(self):
        if self.data_mode == "epsv":
            resp = self.sendcmd("EPSV")
            inner = resp[resp.index("(") + 1:resp.index(")")]
            d = inner[0]
            return self.sock.getpeername()[0], int(inner.strip(d))
        return super().makepasv()

    def makeport(self):
        if self.data_mode != "eprt":
            return super().makeport()
        sock = socket.create_server(("", 0), family=socket.AF_INET, backlog=1)
        self.sendcmd(f"EPRT |1|{self.sock.getsockname()[0]}|{sock.getsockname()[1]}|")
        sock.settimeout(self.timeout)
        return sock


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("path")
    p.add_argument("--security", default="plain", choices=["plain", "tls", "tls-ccc"])
    p.add_argument("--data", default="pasv", choices=["pasv", "epsv", "port", "eprt"])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--noop-after-ccc", action="store_true", help="send NOOP as the first clear command")
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args(argv)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out: dict = {"ok": False, "transfers": 0, "bytes": [], "sha256": [], "stage": "connect"}
    t0 = time.monotonic()
    try:
        ftp = Client(context=ctx, timeout=a.timeout)
        ftp.data_mode = a.data
        ftp.connect(a.host, 21)
        out["stage"] = "login"
        if a.security != "plain":
            ftp.auth()
        ftp.login(a.user, a.password, secure=a.security != "plain")
        if a.security != "plain":
            ftp.prot_p()
        # TYPE I now, so that the first command after CCC is the data-connection command itself
        # (PASV/EPSV/PORT/EPRT): the line the kernel helper does not inspect.
        ftp.voidcmd("TYPE I")
        if a.security == "tls-ccc":
            ftp.ccc()
            if a.noop_after_ccc:
                ftp.voidcmd("NOOP")
        ftp.set_pasv(a.data in ("pasv", "epsv"))
        out["stage"] = "transfer"
        for _ in range(a.count):
            h = hashlib.sha256()
            size = [0]

            def take(chunk: bytes, h=h, size=size) -> None:
                h.update(chunk)
                size[0] += len(chunk)

            with ftp.transfercmd(f"RETR {a.path}") as conn:     # retrbinary() without its TYPE I
                while chunk := conn.recv(65536):
                    take(chunk)
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
            ftp.voidresp()
            out["bytes"].append(size[0])
            out["sha256"].append(h.hexdigest())
            out["transfers"] += 1
        ftp.quit()
        out["ok"] = True
    except (OSError, EOFError, error_perm, error_temp, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
