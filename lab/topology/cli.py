"""`ftlab topo list|show|check`: look at network pictures without building them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.errors import InputError, Problem
from lab.topology import check
from lab.topology import loader as topo
from lab.topology.describe import format_path, format_topology


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("topo", help="list, show and check topology files")
    sub = parser.add_subparsers(dest="topo_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("list", help="the shipped topologies, one line each")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="nodes, addresses, devices and the client->server path")
    p.add_argument("topology", metavar="NAME|FILE")
    p.add_argument("--png", metavar="FILE", help="also draw the topology into this PNG file")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="validate topology files (exit 2 with every problem listed)",
                       description="Validate topology files as a run would meet them: the file itself, its "
                                   "FTP.DATA statements and KEYRING, the rules' interfaces, an iptables-save "
                                   "ruleset loaded in a throw-away network namespace (every line it refuses). "
                                   "Warnings (a design that blocks a control connection, a name that shadows a "
                                   "shipped picture) do not fail the check unless --strict.")
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument("--strict", action="store_true", help="warnings fail the check too (exit 2)")
    p.set_defaults(func=cmd_check)


# -- commands --------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    names = topo.names()
    width = max((len(n) for n in names), default=0)
    status = 0
    for name in names:
        try:
            print(f"{name:<{width}}  {topo.load(name).description}")
        except InputError as exc:
            print(f"{name:<{width}}  INVALID ({len(exc.problems)} problems: ftlab topo check {name})")
            status = 2
    return status


def cmd_show(args: argparse.Namespace) -> int:
    png = writable_png(args.png) if args.png else None     # before the work, not after it
    topology = topo.load(args.topology)
    print(format_topology(topology))
    for w in check.warnings(topology):
        print(check.format_warning(w), file=sys.stderr)
    if png:
        from lab.topology.diagram import draw  # matplotlib only when a picture is asked for

        try:
            print(f"diagram: {draw(topology, png)}")
        except OSError as exc:
            raise InputError([Problem(str(png), 0, "--png", f"cannot write: {exc.strerror or exc}")]) from None
    return 0


def writable_png(name: str) -> Path:
    """--png FILE: a file in a folder that exists (a missing folder is a mistake, not made for you)."""
    path = Path(name)
    folder = path.parent
    if path.is_dir():
        raise InputError([Problem(name, 0, "--png", "is a directory; give a file name such as picture.png")])
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise InputError([Problem(name, 0, "--png", f"the folder {folder} {why}")])
    return path


def cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for file in args.files:
        try:
            t = topo.load(file)
            problems = check.problems(t)
        except InputError as exc:
            problems = exc.problems
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            count = len(problems)
            print(f"{file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
            status = 2
            continue
        warnings = check.warnings(t) + check.ruleset_not_loaded(t)
        for w in warnings:
            print(check.format_warning(w), file=sys.stderr)
        if warnings and args.strict:
            print(f"{file}: {len(warnings)} warning{'s' if len(warnings) != 1 else ''} (--strict)", file=sys.stderr)
            status = 2
            continue
        note = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
        print(f"{file}: ok ({t.name}: {len(t.nodes)} nodes, path {format_path(t)}{note})")
    return status
