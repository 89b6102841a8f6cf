"""A throw-away Kerberos realm for the lab: a real MIT KDC (Debian's krb5-kdc) in a folder of its own.

    realm = Realm(directory, name="FTPLAB.TEST", host="127.0.0.1")
    realm.create()                         # krb5.conf, kdc.conf, the database (kdb5_util)
    realm.add_service("127.0.0.1")         # ftp/127.0.0.1@REALM into realm.keytab (the server's)
    realm.add_user("alice", "pw")          # alice@REALM, and her keys in a keytab of her own
    realm.start()                          # krb5kdc in the foreground of a child process
    ccache = realm.kinit("alice")          # FILE:<dir>/ccache-alice, a TGT from the KDC
    realm.env()                            # KRB5_CONFIG, KRB5_KDC_PROFILE (for any other process)
    realm.stop()
  also a context manager (stop on exit). `python -m lab.ftps.kdc DIR --service HOST --user NAME:PW
  [--port N]` runs one in the foreground (the matrix starts it in a lab node this way).

Nothing here touches /etc/krb5.conf, /etc/krb5kdc or the machine's Kerberos: every program runs with
KRB5_CONFIG and KRB5_KDC_PROFILE pointing into the folder, the database, stash, keytabs, ticket
caches and log live there, and the KDC listens on one address and port (TCP and UDP; clients use
TCP: udp_preference_limit 1). Host names are not canonicalised (dns_canonicalize_hostname false,
rdns false), so a client that dials 203.0.113.1 asks for ftp/203.0.113.1@REALM.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")


def missing_programs() -> list[str]:
    """The MIT Kerberos programs this module needs that are not installed (tools: krb5-kdc, ...)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


def _program(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (Debian: krb5-kdc, krb5-admin-server, krb5-user)")
    return found


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Realm:
    def __init__(self, directory: str | Path, name: str = "FTPLAB.TEST", host: str = "127.0.0.1",
                 port: int | None = None):
        self.dir = Path(directory).resolve()
        self.name, self.host = name, host
        self.port = port or _free_port(host)
        self.keytab = self.dir / "ftp.keytab"
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self._kdc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.kdc_conf)}

    def _environ(self) -> dict[str, str]:
        """The environment of the Kerberos programs: the realm's files, and /usr/sbin on PATH."""
        return {**os.environ, **self.env(), "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}

    def run(self, argv: list[str]) -> str:
        """Run one Kerberos program of this realm (argv[0] is looked up with /usr/sbin on PATH)."""
        _program(argv[0])
        done = subprocess.run(argv, env=self._environ(), capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])}: {(done.stderr or done.stdout).strip()[-400:]}")
        return done.stdout

    def _kadmin(self, query: str) -> str:
        return self.run(["kadmin.local", "-r", self.name, "-q", query])

    def create(self) -> Realm:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        kdc = f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"
        self.krb5_conf.write_text(f"""[libdefaults]
    default_realm = {self.name}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    ignore_acceptor_hostname = true
[realms]
    {self.name} = {{
        kdc = {kdc}
    }}
""")
        self.kdc_conf.write_text(f"""[kdcdefaults]
    kdc_listen = {kdc}
    kdc_tcp_listen = {kdc}
[realms]
    {self.name} = {{
        database_name = {self.dir / 'principal'}
        key_stash_file = {self.dir / 'stash'}
        acl_file = {self.dir / 'kadm5.acl'}
        max_life = 10h
    }}
[logging]
    kdc = FILE:{self.dir / 'kdc.log'}
""")
        (self.dir / "kadm5.acl").write_text("")
        self.run(["kdb5_util", "-r", self.name, "create", "-s", "-P", secrets.token_hex(16)])
        return self

    def add_service(self, host: str, service: str = "ftp") -> str:
        """The service principal service/host@REALM, its keys added to self.keytab."""
        principal = f"{service}/{host}"
        self._kadmin(f"addprinc -randkey {principal}")
        self._kadmin(f"ktadd -k {self.keytab} {principal}")
        os.chmod(self.keytab, 0o600)
        return f"{principal}@{self.name}"

    def add_user(self, user: str, password: str | None = None) -> str:
        """user@REALM (random keys without a password) and <dir>/user-USER.keytab for kinit -k."""
        if password:
            self._kadmin(f"addprinc -pw {password} {user}")
        else:
            self._kadmin(f"addprinc -randkey {user}")
        self._kadmin(f"ktadd -k {self.user_keytab(user)} -norandkey {user}")
        os.chmod(self.user_keytab(user), 0o600)
        return f"{user}@{self.name}"

    def user_keytab(self, user: str) -> Path:
        return self.dir / f"user-{user}.keytab"

    def start(self, wait: float = 10.0) -> Realm:
        _program("krb5kdc")
        self._kdc = subprocess.Popen(["krb5kdc", "-n", "-r", self.name, "-P", str(self.dir / "kdc.pid")],
                                     env=self._environ(), stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "krb5kdc.out", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._kdc.poll() is not None:
                raise RuntimeError(f"krb5kdc exited: {(self.dir / 'krb5kdc.out').read_text()[-400:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"krb5kdc did not listen on {self.host}:{self.port} within {wait} s")

    def kinit(self, user: str) -> str:
        """A ticket-granting ticket for user in FILE:<dir>/ccache-USER (from the user's keytab)."""
        ccache = f"FILE:{self.dir / f'ccache-{user}'}"
        self.run(["kinit", "-k", "-t", str(self.user_keytab(user)), "-c", ccache, f"{user}@{self.name}"])
        return ccache

    def stop(self) -> None:
        if self._kdc is not None and self._kdc.poll() is None:
            self._kdc.send_signal(signal.SIGTERM)
            try:
                self._kdc.wait(5)
            except subprocess.TimeoutExpired:
                self._kdc.kill()
                self._kdc.wait(5)
        self._kdc = None

    def __enter__(self) -> Realm:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Create a realm in DIR and run its KDC in the foreground until SIGTERM (for a lab node)."""
    p = argparse.ArgumentParser(prog="python -m lab.ftps.kdc", description=main.__doc__)
    p.add_argument("dir", type=Path)
    p.add_argument("--realm", default="FTPLAB.TEST")
    p.add_argument("--host", default="127.0.0.1", help="the KDC's address")
    p.add_argument("--port", type=int, default=88)
    p.add_argument("--service", action="append", default=[], metavar="HOST", help="add ftp/HOST (repeatable)")
    p.add_argument("--user", action="append", default=[], metavar="NAME[:PASSWORD]", help="add a user (repeatable)")
    args = p.parse_args(argv)
    realm = Realm(args.dir, args.realm, args.host, args.port).create()
    for host in args.service:
        realm.add_service(host)
    for user in args.user:
        name, _, pw = user.partition(":")
        realm.add_user(name, pw or None)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    realm.start()
    print(f"KDC for {realm.name} on {realm.host}:{realm.port}; KRB5_CONFIG={realm.krb5_conf}", flush=True)
    try:
        while not stop and realm._kdc is not None and realm._kdc.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        realm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
