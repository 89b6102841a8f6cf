"""The CI gate: with FTLAB_REQUIRE_ALL=1 a skipped test fails the run (tests/conftest.py), and .ci/run
fails on "no tests collected", on a broken import contract, and passes pytest's own failures on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab import ROOT

SAMPLE = '''
import os
import pytest

@pytest.mark.network
def test_needs_root():
    pytest.skip("network tests need root")

@pytest.mark.interop
@pytest.mark.skipif(True, reason="vsftpd is not installed")
def test_needs_vsftpd():
    pass

@pytest.mark.xfail(strict=True, reason="a known defect")
def test_known_defect():
    assert False

def test_plain():
    assert True
'''


def run_pytest(tmp_path: Path, files: dict[str, str], require: bool) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    network: n\n    interop: i\n")
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k != "FTLAB_REQUIRE_ALL"}
    if require:
        env["FTLAB_REQUIRE_ALL"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_skips_pass_without_the_gate(tmp_path):
    done = run_pytest(tmp_path, {"test_sample.py": SAMPLE}, require=False)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout and "1 xfailed" in done.stdout


def test_a_skipped_network_or_interop_test_fails_under_the_gate(tmp_path):
    done = run_pytest(tmp_path, {"test_sample.py": SAMPLE}, require=True)
    assert done.returncode == 1, done.stdout
    assert "a network test was skipped, and FTLAB_REQUIRE_ALL=1 forbids skipping: network tests need root" \
        in done.stdout
    assert "an interop test was skipped, and FTLAB_REQUIRE_ALL=1 forbids skipping: vsftpd is not installed" \
        in done.stdout
    assert "1 passed" in done.stdout and "1 xfailed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1]


def test_a_module_skipped_while_collecting_fails_under_the_gate(tmp_path):
    module = 'import pytest\npytest.skip("no kernel module", allow_module_level=True)\n'
    done = run_pytest(tmp_path, {"test_mod.py": module, "test_ok.py": "def test_ok():\n    pass\n"}, require=True)
    assert done.returncode != 0, done.stdout
    assert "no kernel module" in done.stdout


def fake_repo(tmp_path: Path, pytest_rc: int, lint_rc: int = 0) -> Path:
    """.ci/run beside a setup.sh that does nothing and a .venv whose pytest and lint-imports exit as told."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for path, text in {tmp_path / "setup.sh": "exit 0",
                       bin_dir / "pytest": f'echo "pytest FTLAB_REQUIRE_ALL=$FTLAB_REQUIRE_ALL"; exit {pytest_rc}',
                       bin_dir / "lint-imports": f"echo contracts; exit {lint_rc}"}.items():
        path.write_text(f"#!/bin/sh\n{text}\n")
        path.chmod(0o755)
    return tmp_path / ".ci" / "run"


@pytest.mark.parametrize("pytest_rc, lint_rc, want", [
    (0, 0, 0),
    (1, 0, 1),      # a test failed
    (5, 0, 1),      # no tests collected: nothing was proved
    (0, 1, 1),      # an import contract is broken
])
def test_ci_run_exit_codes(tmp_path, pytest_rc, lint_rc, want):
    done = subprocess.run([str(fake_repo(tmp_path, pytest_rc, lint_rc))], capture_output=True, text=True, timeout=30)
    assert done.returncode == want, done.stdout + done.stderr
    assert "pytest FTLAB_REQUIRE_ALL=1" in done.stdout
    if pytest_rc == 5:
        assert "collected no tests" in done.stderr


def test_no_test_skips_because_a_project_module_is_missing():
    """A renamed or deleted module of the lab must fail its tests, not skip them."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in ("skipif", "importorskip", "find_spec"):
                continue
            words = {c.value.split(".")[0] for c in ast.walk(node)
                     if isinstance(c, ast.Constant) and isinstance(c.value, str)}
            if words & {"lab", "nat", "firewall"}:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"skips on a project module: {offenders}"


def test_no_two_test_modules_share_a_name():
    """The test folders are not packages: two test_X.py in different folders cannot both be collected
    in one run (pytest's 'import file mismatch'), which broke a whole CI run once while each folder
    passed on its own."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a module name"
        seen[path.name] = path
