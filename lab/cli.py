"""`ftlab`: the command line. Each command family lives in its own module and registers itself."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from lab import __version__
from lab.errors import LabError

# Each module has `register(subparsers)`, adding commands whose `func(args) -> int` runs them.
COMMAND_MODULES = [
    "lab.topology.cli",   # topo list/show/check
    "lab.network.cli",    # shell, baseline, clean
    "lab.ftps.cli",       # server, client, ca
    "lab.matrix.cli",     # matrix, run, recommend, bench, report merge
    "lab.course.cli",     # course list/start/check/hint/status/reset/new/summary
    "lab.setup_cli",      # setup [--check]: the Debian packages and ProFTPD of an installed lab
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftlab",
        description="FTPS Traversal Lab: will secure FTP get through this network?",
    )
    parser.add_argument("--version", action="version", version=f"ftlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        # A family that fails to import is a broken install, never a command quietly missing.
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    interrupts = _interrupt_count()
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        if _interrupts > interrupts:
            # Ctrl-C reaches the whole foreground group: a program the lab ran may die of it
            # (iperf3: "interrupt") before Python raises KeyboardInterrupt here. It is still Ctrl-C.
            print("ftlab: interrupted", file=sys.stderr)
            return 130
        print(f"ftlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ftlab: interrupted", file=sys.stderr)
        return 130


_interrupts = 0


def _on_sigint(signum, frame) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt), counted."""
    global _interrupts
    _interrupts += 1
    signal.default_int_handler(signum, frame)


def _interrupt_count() -> int:
    """Count Ctrl-Cs from now on (where Python's default handler is in place, in the main thread)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    return _interrupts


if __name__ == "__main__":
    sys.exit(main())
