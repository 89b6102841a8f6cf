"""Hostile input files given to the engine's commands: each is refused with one line naming the file
(and the line, where there is one), exit code 2, no traceback, no hang, and nothing of a file that is
not ours echoed back. Each case runs the real `ftlab` command in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import SCENARIO_DIR

FTLAB = [sys.executable, "-m", "lab.cli"]
MATRIX = [*FTLAB, "matrix", "--topologies", "lan", "--security", "plain", "--data", "pasv", "--quiet"]
SECRET = "$y$j9T$Zx0secretHASHnobodymustsee$"


def ftlab(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([*FTLAB, *argv], capture_output=True, text=True, timeout=timeout, cwd="/")


def refused(done: subprocess.CompletedProcess, *expect: str) -> str:
    """The one line of stderr of a refused command; it must contain each of `expect`."""
    err = done.stderr.strip()
    assert done.returncode == 2, f"exit {done.returncode}: {err}"
    assert "Traceback" not in err and err.count("\n") == 0, err
    for text in expect:
        assert text in err, err
    return err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    made = {
        "latin1": tmp_path / "latin1.yaml",
        "dir": tmp_path / "a-directory",
        "deep.yaml": tmp_path / "deep.yaml",
        "deep.json": tmp_path / "deep.json",
        "bigint.json": tmp_path / "bigint.json",
        "fifo": fifo,
        "zero": Path("/dev/zero"),
    }
    made["latin1"].write_bytes("name: caf\u00e9\n".encode("latin-1"))
    made["dir"].mkdir()
    made["deep.yaml"].write_text("[" * 100_000 + "]" * 100_000 + "\n")
    made["deep.json"].write_text("[" * 100_000 + "]" * 100_000 + "\n")
    made["bigint.json"].write_text('{"schema": "ftlab.results/1",\n "run_id": ' + "9" * 5000 + "}\n")
    return made


# -- --scenarios -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, expect", [
    ("latin1", ["latin1.yaml:1: ", "not UTF-8"]),
    ("dir", ["a-directory: ", "is a directory, not a scenario file"]),
    ("deep.yaml", ["deep.yaml:1: ", "nested deeper than 64 levels"]),
    ("zero", ["/dev/zero: ", "not a regular file"]),
    ("fifo", ["fifo: ", "not a regular file"]),
])
def test_scenarios_file(files, case, expect):
    refused(subprocess.run([*MATRIX, "--scenarios", str(files[case])], capture_output=True, text=True,
                           timeout=20), *expect)


def test_scenarios_entry_of_the_wrong_type_is_a_line_not_a_traceback(tmp_path):
    """`clients: {bogus: a-string}` was an AttributeError traceback."""
    text = (SCENARIO_DIR / "default.yaml").read_text().replace("clients:\n", "clients:\n  bogus: a-string\n", 1)
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    line = text.splitlines().index("  bogus: a-string") + 1
    refused(subprocess.run([*MATRIX, "--scenarios", str(path)], capture_output=True, text=True, timeout=20),
            f"{path}:{line}: clients.bogus: expected a mapping, got 'a-string'")


# -- --baseline ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, expect", [
    ("latin1", ["latin1.yaml:1: ", "not UTF-8"]),
    ("deep.json", ["deep.json:1: ", "nested deeper than 64 levels"]),
    ("bigint.json", ["bigint.json:2: ", "a number of 5000 characters"]),
    ("zero", ["/dev/zero: ", "not a regular file"]),
    ("fifo", ["fifo: ", "not a regular file"]),
])
def test_baseline_file(files, case, expect):
    refused(subprocess.run([*MATRIX, "--baseline", str(files[case])], capture_output=True, text=True, timeout=20),
            *expect)


def test_report_merge_reads_results_the_same_way(files):
    refused(ftlab("report", "merge", str(files["deep.json"])), "nested deeper than 64 levels")


# -- topology files --------------------------------------------------------------------------------------

def shadow_like(path: Path) -> Path:
    path.write_text(f"root:{SECRET}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
                    f"alice: {SECRET}\nbob: x\n")
    return path


@pytest.mark.parametrize("command", [["topo", "check"], ["topo", "show"]])
@pytest.mark.parametrize("target", ["shadow-like", "/etc/shadow", "/etc/passwd"])
def test_topology_that_is_a_symlink_to_a_system_file_is_not_echoed(tmp_path, command, target):
    if target == "/etc/shadow" and not os.access(target, os.R_OK):
        target = "shadow-like"      # not root: the readable stand-in only
    real = shadow_like(tmp_path / "shadow") if target == "shadow-like" else Path(target)
    link = tmp_path / "net.yaml"
    link.symlink_to(real)
    done = ftlab(*command, str(link))
    assert done.returncode == 2
    out = done.stdout + done.stderr
    assert "Traceback" not in out
    assert f"{link}:1: not a topology file" in out, out
    assert SECRET not in out, out
    for line in real.read_text().splitlines():
        assert line.split(":")[0] + ":" not in out, f"echoed a line of {real}: {out}"
    assert len(out) < 400, out


def test_a_64_mb_topology_is_refused_at_once(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)      # sparse: the size is what is refused, before a byte is read
    t0 = time.monotonic()
    done = ftlab("topo", "check", str(big))
    assert time.monotonic() - t0 < 10
    assert done.returncode == 2 and f"{big}: is 67108864 bytes; a topology file may have at most" in done.stderr


@pytest.mark.parametrize("case, expect", [
    ("latin1", ["latin1.yaml:1: ", "not UTF-8"]),
    ("dir", ["a-directory: ", "is a directory, not a topology file"]),
    ("deep.yaml", ["deep.yaml:1: ", "nested deeper than 64 levels"]),
    ("zero", ["/dev/zero: ", "not a regular file"]),
    ("fifo", ["fifo: ", "not a regular file"]),
])
def test_topology_file(files, case, expect):
    done = ftlab("topo", "show", str(files[case]))
    refused(done, *expect)


def test_yaml_aliases_that_expand_to_millions_of_values_are_refused(tmp_path):
    """A billion-laughs file: nine lines that would expand to 9**9 values."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    refused(ftlab("topo", "show", str(path)), f"{path}:1: holds more than 100000 values")
    assert time.monotonic() - t0 < 10
