"""The layering of DESIGN.md is checked by import-linter (contracts in pyproject.toml): the real tree
keeps them, and a forbidden import in a copy of the tree breaks them, naming the import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for pkg in ("lab", "nat", "firewall"):
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_its_layers():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    # a device reaching up into the engine
    ("nat/rules.py", "import lab.matrix.runner", "nat is not allowed to import lab.matrix"),
    # the two device packages importing each other
    ("firewall/static.py", "import nat.alg", "firewall is not allowed to import nat"),
    # the FTP endpoints importing the engine's errors (they have their own)
    ("lab/ftps/grammar.py", "import lab.errors", "lab.ftps is not allowed to import lab.errors"),
    # a report reaching back into the runner
    ("lab/report/junit.py", "import lab.matrix.runner", "lab.report is not allowed to import lab.matrix"),
])
def test_a_forbidden_import_breaks_a_contract(tree_copy, module, line, broken):
    target = tree_copy / module
    original = target.read_text()
    target.write_text(original + f"\n{line}  # noqa\n")
    try:
        done = _lint(tree_copy)
    finally:
        target.write_text(original)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout[-3000:]
