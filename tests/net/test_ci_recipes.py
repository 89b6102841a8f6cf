"""The CI recipes (recipes/ci/) work from a repository that holds only designs.

A scratch git repository with two designs (an nftables DMZ and a branch office behind NAT, from the
lab's examples and pictures) and an expectations file; the lab installed into a fresh virtual
environment by the recipe's own install line, from this checkout's HEAD commit in place of the
placeholder URL, so that it is the installed package that runs (its shipped pictures, scenarios,
schema, `tools` and setup script, never this checkout's); the URL is file://localhost/..., as the pip
of a fresh Debian or Python 3.11 venv refuses `git+file:///` (no host) in a `name @ url` requirement; then the recipe's `ftlab setup`, its shard command
for every shard and its merge command, run in the scratch repository as written. The exit code, the
merged report folder and its junit.xml are checked for a design that does what it states (0), one that
does not (1), a typo in the expectations file (the shard job fails, ftlab says 2) and a missing shard (2);
the merged shards give every cell the outcome of one unsharded run.

The fresh environment's dependencies: pip would download matplotlib, scapy, cryptography, … (and build
NetfilterQueue and gssapi) for minutes. Instead the environment gets a .pth naming a folder of links to
the test's own environment's packages, less the lab itself and pip/setuptools: pip sees its
requirements satisfied and installs only the lab, built from the git URL as in CI (with build isolation:
setuptools from pip's cache or PyPI). Nothing of the lab comes from this checkout's files.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.network, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "ci"
#: Four cells per design keep the test short; the recipe's own FTLAB_MATRIX_ARGS come first.
NARROW = "--security plain tls --data pasv port --size 64KiB"

EXPECT = """\
schema: ftlab.expect/1
description: what the change board signed off
expect:
  plain/*: pass
  tls/pasv: pass
  dmz/tls/port: pass
  branch/tls/port: fail      # PORT names the client's private address; the ALG cannot read TLS
"""


def _lines(doc: dict, job: str) -> list[str]:
    spec = doc["jobs"][job] if "jobs" in doc else doc[job]
    if "steps" in spec:
        return [s["run"] for s in spec["steps"] if "run" in s]
    base = doc.get(spec.get("extends", ""), {})
    return [*spec.get("before_script", base.get("before_script", [])), *spec["script"]]


def _recipe() -> tuple[dict, dict[str, str]]:
    """The GitHub recipe's variables and its commands by what they do (the unit test checks that
    GitLab's are the same)."""
    gh = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    gl = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())
    assert _lines(gh, "shard") == _lines(gl, "ftlab-shard") and _lines(gh, "merge") == _lines(gl, "ftlab-report")
    _apt, install, setup, shard = _lines(gh, "shard")
    merge = _lines(gh, "merge")[-1]
    return gh["env"], {"install": install, "setup": setup, "shard": shard, "merge": merge}


def _deps_folder(target: Path) -> Path:
    """Links to this environment's installed packages, less the lab's own files and pip/setuptools."""
    site = Path(sysconfig.get_path("purelib"))
    own = {Path(str(f)).parts[0] for f in md.distribution("ftps-traversal-lab").files or []}
    skip = own | {"lab", "nat", "firewall", "_distutils_hack", "pkg_resources", "distutils-precedence.pth"}
    target.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if name in skip or name.split("-")[0].lower() in ("pip", "setuptools") or name.endswith(".pth"):
            continue
        (target / name).symlink_to(entry)
    return target


def _run(line: str, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def lab_installed(tmp_path_factory):
    """(recipe variables as the job would see them, the recipe's commands, timings)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    base = tmp_path_factory.mktemp("ci-recipe")
    venv = base / "ftlab-venv"
    bin_dir = base / "bin"               # python3 of the job: this Python's base interpreter
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    subprocess.run([str(bin_dir / "python3"), "-m", "venv", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "ftlab-test-deps.pth").write_text(f"{_deps_folder(base / 'deps')}\n")

    variables, commands = _recipe()
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != Path(sys.executable).parent.resolve()]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({k: str(v) for k, v in variables.items()})
    env.update({"PATH": os.pathsep.join([str(bin_dir), *path]), "FTLAB_REPO": f"file://localhost{ROOT}",
                "FTLAB_REF": commit, "FTLAB_VENV": str(venv),
                "FTLAB_MATRIX_ARGS": f"{variables['FTLAB_MATRIX_ARGS']} {NARROW}"})
    timings = {}
    start = time.monotonic()
    done = _run(commands["install"], base, env)
    timings["install"] = time.monotonic() - start
    assert done.returncode == 0, done.stdout + done.stderr

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import lab; print(lab.__file__); print(lab.ROOT)"],
                           capture_output=True, text=True, cwd=base, env=env, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and Path(where[1]) == Path(where[0]).parent / "_shipped", where
    return env, commands, timings


@pytest.fixture
def designs(tmp_path):
    """A repository with only designs: designs/*.yaml, the ruleset one names, expect.yaml."""
    repo = tmp_path / "network-designs"
    (repo / "designs").mkdir(parents=True)
    examples = ROOT / "topologies" / "examples"
    (repo / "designs" / "dmz.yaml").write_text(
        (examples / "nftables-filter.yaml").read_text().replace("name: nftables-filter", "name: dmz", 1))
    shutil.copy(examples / "nftables-filter.nft", repo / "designs" / "nftables-filter.nft")
    (repo / "designs" / "branch.yaml").write_text(
        (ROOT / "topologies" / "client-nat.yaml").read_text().replace("name: client-nat", "name: branch", 1))
    (repo / "expect.yaml").write_text(EXPECT)
    git = ["git", "-C", str(repo), "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "designs"], check=True)
    return repo


def _junit(folder: Path) -> ET.Element:
    return ET.parse(folder / "junit.xml").getroot()


def _cases(root: ET.Element) -> dict[str, str]:
    """{topology/cell: passed | failure TYPE | error | skipped} per testcase."""
    out = {}
    for case in root.iter("testcase"):
        child = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        name = f"{case.get('classname').removeprefix('ftlab.')}/{case.get('name')}"
        out[name] = "passed" if child is None else f"{child.tag} {child.get('type') or ''}".strip()
    return out


def _outcomes_of(doc: dict) -> dict[str, tuple]:
    return {s["id"]: (s["outcome"], s["stage"], s.get("device"), s["matches"], s.get("expect_met"))
            for s in doc["scenarios"]}


def _outcomes(report: Path) -> dict[str, tuple]:
    return _outcomes_of(json.loads((report / "results.json").read_text()))


def _shards(commands, repo, env, shards: int) -> list[subprocess.CompletedProcess]:
    return [_run(commands["shard"], repo, {**env, "SHARD": str(k), "SHARDS": str(shards)}) for k in range(1, shards + 1)]


@pytest.mark.timeout(600)
def test_setup_is_quick_and_complete_for_the_installed_lab(lab_installed):
    env, commands, timings = lab_installed
    link = os.path.realpath("/usr/local/bin/ftlab")
    start = time.monotonic()
    done = _run(commands["setup"], Path(env["FTLAB_VENV"]), env)      # ProFTPD into this environment once
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ready: {env['FTLAB_VENV']}/bin/ftlab" in done.stderr
    assert list(Path(env["FTLAB_VENV"]).glob("lib/python*/site-packages/.deps/proftpd/usr/sbin/proftpd")), \
        "ProFTPD where the installed lab looks for it (lab.endpoints.peers)"
    assert os.path.realpath("/usr/local/bin/ftlab") == link, "an installed lab links nothing"
    first = time.monotonic() - start
    check = commands["setup"].replace("ftlab setup", "ftlab setup --check")
    start = time.monotonic()
    done = _run(check, Path(env["FTLAB_VENV"]), env)
    assert done.returncode == 0 and "everything is in place" in done.stderr, done.stderr
    again = _run(commands["setup"], Path(env["FTLAB_VENV"]), env)
    assert again.returncode == 0 and "installing" not in again.stderr and "unpacking" not in again.stderr, again.stderr
    assert time.monotonic() - start < 30, "a second setup changes nothing and is quick"
    print(f"install {timings['install']:.1f} s, first setup {first:.1f} s, check and second setup "
          f"{time.monotonic() - start:.1f} s")


@pytest.mark.timeout(600)
def test_designs_as_stated_exit_0_with_the_merged_report_and_junit(lab_installed, designs):
    env, commands, _ = lab_installed
    ran = _shards(commands, designs, env, 2)
    assert all(r.returncode == 0 for r in ran), [r.stdout + r.stderr for r in ran]
    for k in (1, 2):
        assert (designs / "reports" / f"shard-{k}" / "junit.xml").is_file()
    done = _run(commands["merge"], designs, env)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = designs / "reports" / "merged"
    for name in ("results.json", "index.html", "junit.xml"):
        assert (merged / name).is_file(), name
    doc = json.loads((merged / "results.json").read_text())
    assert {s["topology"] for s in doc["scenarios"]} == {"dmz", "branch"}
    assert doc["expect_file"] and all(s.get("expect_met") for s in doc["scenarios"])
    root = _junit(merged)
    cases = _cases(root)
    assert len(cases) == 8 and set(cases.values()) == {"passed"}, cases
    assert root.get("tests") == "8" and root.get("failures") == "0" and root.get("errors") == "0"

    # a shard artifact lost: the merge job says so (2), never a green verdict
    shutil.rmtree(designs / "reports" / "merged")
    shutil.rmtree(designs / "reports" / "shard-2")
    lost = _run(commands["merge"], designs, env)
    assert lost.returncode == 2, lost.stdout + lost.stderr
    assert "shard 2/2 is missing" in lost.stderr

    # the merged shards say what one unsharded run of the same matrix says, cell by cell
    shutil.rmtree(designs / "reports")
    (whole,) = _shards(commands, designs, env, 1)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert _outcomes(designs / "reports" / "shard-1") == _outcomes_of(doc)


@pytest.mark.timeout(600)
def test_a_design_that_does_not_do_what_it_states_exits_1_with_the_failure_in_junit(lab_installed, designs):
    env, commands, _ = lab_installed
    text = (designs / "expect.yaml").read_text().replace("branch/tls/port: fail", "branch/tls/port: pass")
    (designs / "expect.yaml").write_text(text)
    (ran,) = _shards(commands, designs, env, 1)
    assert ran.returncode == 0, ran.stdout + ran.stderr          # exit 1 is the merge job's to judge
    done = _run(commands["merge"], designs, env)
    assert done.returncode == 1, done.stdout + done.stderr
    cases = _cases(_junit(designs / "reports" / "merged"))
    assert cases.pop("branch/tls/port") == "failure expectation-unmet"
    assert set(cases.values()) == {"passed"}
    failure = next(_junit(designs / "reports" / "merged").iter("failure"))
    line = next(n for n, x in enumerate(text.splitlines(), 1) if x.startswith("  branch/tls/port"))
    assert f"expect.yaml:{line}" in failure.get("message")


@pytest.mark.timeout(300)
def test_a_typo_in_the_expectations_fails_the_shard_job_naming_the_line(lab_installed, designs):
    env, commands, _ = lab_installed
    (designs / "expect.yaml").write_text(EXPECT.replace("tls/pasv: pass", "tls/pasv: passes"))
    (ran,) = _shards(commands, designs, env, 1)
    assert ran.returncode != 0
    assert "expect.yaml:5" in ran.stderr, ran.stderr
    shutil.rmtree(designs / "reports", ignore_errors=True)
    direct = _run(commands["shard"].split("||")[0].removeprefix("rc=0;"), designs, {**env, "SHARD": "1", "SHARDS": "1"})
    assert direct.returncode == 2, direct.stderr
    assert not (designs / "reports" / "shard-1" / "results.json").exists()
