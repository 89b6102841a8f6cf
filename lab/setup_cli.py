"""`ftlab setup [--check]`: what `./setup.sh` does for a checkout, for a lab installed with pip.

The Debian packages listed in `tools` and ProFTPD unpacked where the lab looks for it, from the files
the installed package ships (lab/_shipped: `tools`, setup.sh): one list, one script. The Python
packages are pip's: they are only checked, and nothing is linked into /usr/local/bin (the lab's
`ftlab` is where pip put it). In a checkout it runs the checkout's setup.sh in the same mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab import ROOT


def setup_script() -> Path:
    return ROOT / "setup.sh"


def deps_base() -> Path:
    """The folder whose `.deps/proftpd` the lab runs ProFTPD from (lab.endpoints.peers)."""
    from lab.endpoints import peers

    return peers.PROFTPD_DIR.parent.parent


def register(sub) -> None:
    p = sub.add_parser(
        "setup",
        help="install the Debian packages and ProFTPD the lab needs (as root); --check changes nothing",
        description="Install what the lab needs outside Python, from the list the package ships "
                    "(`tools`): the Debian packages (apt-get) and ProFTPD with mod_tls (unpacked, as "
                    "Debian's proftpd conflicts with vsftpd); then check that every program the list "
                    "names is there. Quick when all is in place. For a lab installed with pip; a "
                    "checkout has ./setup.sh, which also makes its .venv.",
    )
    p.add_argument("--check", action="store_true",
                   help="say what is missing and change nothing; exit 1 if anything is")
    p.set_defaults(func=run)


def run(args) -> int:
    script = setup_script()
    if not script.is_file():
        print(f"ftlab setup: {script} is missing: this installation of the lab is incomplete", file=sys.stderr)
        return 3
    env = {**os.environ, "FTLAB_PYTHON": sys.executable, "FTLAB_DEPS_BASE": str(deps_base())}
    argv = ["bash", str(script), *(["--check"] if args.check else [])]
    return subprocess.run(argv, env=env, check=False).returncode
