"""The one list of external programs (`tools`) against the code and against this machine.

Every program the code or the tests run (each argv[0] written in the code, found by reading the
source: the argv of a subprocess or lab call, a list assigned to a name that such a call is given, the
list a `*_argv()` function returns, and the program after a wrapper such as `stdbuf` or `unshare`) must
be in `tools`; everything `tools` names must be on this machine; and `setup.sh --check` must say so, and
fail when something is missing.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ROOT

TOOLS_FILE = ROOT / "tools"
SOURCES = ["lab", "nat", "firewall", "tests"]

#: Calls whose arguments are argv lists (subprocess, Mininet/LabNet, the lab's own helpers).
EXEC_CALLS = {"run", "Popen", "popen", "check_output", "check_call", "call", "argv_in", "_start_program",
              "run_sandboxed", "execvp", "execv"}
#: Programs that run the program named after their options; each with its options that take a value.
WRAPPERS = {"stdbuf": set(), "unshare": {"--propagation"}, "setpriv": set(), "mnexec": {"-a"},
            "timeout": set(), "env": set()}
#: Programs this repository provides itself (setup.sh links ftlab into /usr/local/bin).
OURS = {"ftlab"}


def read_tools() -> dict[str, str]:
    """{program or repository path: Debian package} from the `tools` file."""
    provides = {}
    for line in TOOLS_FILE.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        package = words[0].removesuffix(":unpack")
        for thing in words[1:]:
            if thing != "-":
                provides[thing] = package
    return provides


# -- reading argv[0]s out of the source ---------------------------------------------------------------

def python_files() -> Iterator[Path]:
    for top in SOURCES:
        yield from sorted((ROOT / top).rglob("*.py"))


def call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def heads(expr: ast.AST) -> Iterator[ast.AST]:
    """The expressions that can be the first element of an argv written as `expr`."""
    if isinstance(expr, ast.List | ast.Tuple) and expr.elts:
        first = expr.elts[0]
        yield first.value if isinstance(first, ast.Starred) else expr
    elif isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        yield from heads(expr.left)
    elif isinstance(expr, ast.Name | ast.Call):
        yield expr


def programs_in_list(lst: ast.List | ast.Tuple) -> Iterator[tuple[str, int]]:
    """argv[0] of a list literal, and the program a wrapper in it runs."""
    words = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in lst.elts]
    i = 0
    while i < len(words) and words[i] is not None and not words[i].startswith("-"):
        program = words[i]
        yield program, lst.lineno
        if program not in WRAPPERS:
            return
        i += 1
        while i < len(words) and words[i] is not None and words[i].startswith("-"):
            i += 2 if words[i] in WRAPPERS[program] else 1


class _Scope(ast.NodeVisitor):
    """The names assigned in one function (or the module), not in the functions inside it."""

    def __init__(self, node: ast.AST):
        self.assigned: dict[str, list[ast.AST]] = {}
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def visit_FunctionDef(self, node):      # a scope of its own
        pass

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Assign(self, node):
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.assigned.setdefault(target.id, []).append(node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if isinstance(node.target, ast.Name) and node.value is not None:
            self.assigned.setdefault(node.target.id, []).append(node.value)
        self.generic_visit(node)

    def visit_For(self, node):
        # `for argv in steps:` - each item of what is iterated is an argv
        names = node.target.elts if isinstance(node.target, ast.Tuple) else [node.target]
        for name in names:
            if isinstance(name, ast.Name):
                self.assigned.setdefault(name.id, []).append(ast.List(elts=[ast.Starred(node.iter)]))
        self.generic_visit(node)


def _nested_lists(value: ast.AST) -> Iterator[ast.AST]:
    """The lists and tuples inside a literal list or tuple (or a comprehension's element), at any depth."""
    todo = list(value.elts) if isinstance(value, ast.List | ast.Tuple) else \
        [value.elt] if isinstance(value, ast.ListComp) else []
    while todo:
        item = todo.pop()
        if isinstance(item, ast.List | ast.Tuple):
            yield item
            todo += item.elts


def argv_programs(tree: ast.Module, known: frozenset[str] = frozenset()) -> Iterator[tuple[str, int]]:
    """(program, line) for every argv[0] literal of one module. `known`: programs already listed; a
    literal list of argvs (a probe's steps) with one of them first in any item names programs in all."""
    module = _Scope(tree)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    scopes = {id(f): _Scope(f) for f in functions}
    # Functions that hand a parameter to an exec call as its argv run argv too (a test's
    # `out(argv)`; not `start(argv)` that runs FTLAB + argv), and
    # functions with "argv" in their name return one.
    exec_calls = set(EXEC_CALLS)
    for f in functions:
        params = {a.arg for a in [*f.args.args, *f.args.kwonlyargs]}
        for call in ast.walk(f):
            if isinstance(call, ast.Call) and call_name(call) in EXEC_CALLS and params & {
                    h.id for arg in call.args for h in heads(arg) if isinstance(h, ast.Name)}:
                exec_calls.add(f.name)
    argv_functions = {f.name: [(r.value, scopes[id(f)]) for r in ast.walk(f) if isinstance(r, ast.Return) and r.value]
                      for f in functions if "argv" in f.name}
    # A module's own `def run(...)` that runs nothing hides subprocess's name for bare calls.
    shadowed = {f.name for f in functions} - exec_calls
    seen: set[int] = set()

    def resolve(expr: ast.AST, scope: _Scope, depth: int = 0) -> Iterator[tuple[str, int]]:
        if depth > 6 or id(expr) in seen:
            return
        seen.add(id(expr))
        for head in heads(expr):
            if isinstance(head, ast.List | ast.Tuple):
                yield from programs_in_list(head)
            elif isinstance(head, ast.Name):
                values = scope.assigned.get(head.id) or module.assigned.get(head.id, [])
                for value in values:
                    yield from resolve(value, scope, depth + 1)
                    # a literal list of argvs (a probe's steps, CLEANUP): each inner list too
                    for inner in _nested_lists(value):
                        yield from resolve(inner, scope, depth + 1)
            elif isinstance(head, ast.Call):
                for value, where in argv_functions.get(call_name(head), []):
                    yield from resolve(value, where, depth + 1)

    def calls(node: ast.AST, scope: _Scope) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from calls(child, scopes[id(child)])
                continue
            if isinstance(child, ast.Call) and call_name(child) in exec_calls and not (
                    isinstance(child.func, ast.Name) and child.func.id in shadowed):
                for arg in [*child.args, *(k.value for k in child.keywords if k.arg in ("args", "argv"))]:
                    yield from resolve(arg, scope)
            yield from calls(child, scope)

    yield from calls(tree, module)
    for returns in argv_functions.values():
        for value, where in returns:
            yield from resolve(value, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and len(node.elts) > 1 and all(
                isinstance(e, ast.List | ast.Tuple) and e.elts and isinstance(e.elts[0], ast.Constant)
                and isinstance(e.elts[0].value, str) for e in node.elts):
            found = [p for e in node.elts for p in programs_in_list(e)]
            if any(p in known for p, _ in found):
                yield from found


def code_programs() -> dict[str, list[str]]:
    """{program: [file:line, ...]} for every argv[0] literal in the code and the tests."""
    found: dict[str, list[str]] = {}
    known = frozenset(read_tools())
    for path in python_files():
        for program, line in argv_programs(ast.parse(path.read_text(), str(path)), known):
            found.setdefault(program, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def machine_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


# -- the tests -------------------------------------------------------------------------------------------

def test_every_program_the_code_runs_is_in_the_list():
    listed = read_tools()
    found = code_programs()
    unlisted = {p: where for p, where in found.items() if p not in listed and p not in OURS}
    assert not unlisted, f"programs run by the code but not in {TOOLS_FILE.name}: {unlisted}"


def test_the_scanner_finds_what_it_must():
    """The reader above is a heuristic: it must at least see these, in their different shapes."""
    found = code_programs()
    for program in ("mnexec",          # argv_in: a list literal with a starred tail
                    "iptables",        # nat/ and firewall/ rule lists
                    "iptables-restore",  # returned by firewall.static.restore_argv()
                    "unshare", "sh",   # the sandbox's UNSHARE + argv; own_sysfs_argv's wrapper
                    "conntrack",       # behind stdbuf in nat/kernel_helper.py
                    "nft", "iperf3", "tcpdump", "curl", "lftp", "sysctl", "ip", "ss",
                    "useradd", "chpasswd"):
        assert program in found, f"the scanner no longer sees {program}"


def test_programs_named_another_way_are_in_the_list():
    """sys.executable (the .venv's python3), peers.VSFTPD, peers.PROFTPD, the browser test's path."""
    listed = read_tools()
    assert {"python3", "vsftpd", ".deps/proftpd/usr/sbin/proftpd", "chromium"} <= set(listed)
    from lab.endpoints import peers
    from lab.network import probe

    assert str(peers.PROFTPD.relative_to(ROOT)) in listed
    assert set(probe.TOOLS) <= set(listed), "the run-time probe checks a tool that `tools` does not list"


def test_everything_listed_is_on_this_machine():
    path = machine_path()
    missing = [f"{thing} ({package})" for thing, package in read_tools().items()
               if not ((ROOT / thing).exists() if "/" in thing else shutil.which(thing, path=path))]
    assert not missing, f"missing here (run ./setup.sh): {', '.join(missing)}"


def test_setup_check_passes_here():
    done = subprocess.run([str(ROOT / "setup.sh"), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "everything is in place" in done.stderr


def test_setup_check_fails_and_names_what_is_missing(tmp_path):
    """The same script, with a list naming a package and a program that do not exist, and a
    pyproject.toml asking for a Python package that .venv does not have."""
    shutil.copy2(ROOT / "setup.sh", tmp_path / "setup.sh")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "tools").write_text(TOOLS_FILE.read_text() + "ftlab-no-such-package  ftlab-no-such-program\n")
    pyproject = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('dependencies = [', 'dependencies = [\n    "ftlab-no-such-module>=1",', 1))
    done = subprocess.run([str(tmp_path / "setup.sh"), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "missing Debian packages: ftlab-no-such-package" in done.stderr
    assert "ftlab-no-such-program (ftlab-no-such-package)" in done.stderr
    assert "missing Python packages in .venv: ftlab-no-such-module>=1" in done.stderr


@pytest.mark.parametrize("source, programs", [
    ('subprocess.run(["nft", "list", "ruleset"])', {"nft"}),
    ('argv = ["curl", "-sS"]\nargv += ["-v"]\nnet.popen("client", argv)', {"curl"}),
    ('subprocess.Popen(["stdbuf", "-oL", "conntrack", "-E"])', {"stdbuf", "conntrack"}),
    ('def x_argv():\n    return ["unshare", "--propagation", "private", "sh", "-c", "true"]', {"unshare", "sh"}),
    ('STEPS = [["tc", "qdisc"], ["ip", "link"]]\nfor argv in STEPS:\n    subprocess.run(argv)', {"tc", "ip"}),
    ('subprocess.run([*FTLAB, "topo", "list"])', set()),
    ('subprocess.run(FTLAB + ["topo", "list"])', set()),
    ('modes = ["plain", "tls"]', set()),
    ('PAIRS = [("plain", "tls"), ("pasv", "port")]', set()),
    ('def run(roots, mode):\n    pass\nroots = start(src={"EXTENSIONS": ["AUTH_TLS"]})\nrun(roots, "tls")', set()),
    ('roots = start(src={"EXTENSIONS": ["AUTH_TLS"]})\nsubprocess.run(roots)', set()),
    ('F = Feature("htb", (("tc", "qdisc", "add"), ("frob", "-x")))', {"tc", "frob"}),
])
def test_the_scanner_reads_each_shape(source, programs):
    assert {p for p, _ in argv_programs(ast.parse(source), frozenset({"tc"}))} == programs
