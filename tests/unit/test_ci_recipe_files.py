"""The CI recipes (recipes/ci/) parse, agree with each other, and publish what the engine writes; the
installed lab ships what it loads by name (pyproject.toml's package list and package data).

tests/net/test_ci_recipes.py runs the recipes' commands from a scratch designs-only repository.
"""

from __future__ import annotations

import fnmatch
import glob
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "ci"


def github() -> dict:
    return yaml.safe_load((RECIPES / "github-actions.yml").read_text())


def gitlab() -> dict:
    return yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())


def github_lines(job: str) -> list[str]:
    return [s["run"] for s in github()["jobs"][job]["steps"] if "run" in s]


def gitlab_lines(job: str) -> list[str]:
    doc = gitlab()
    spec = doc[job]
    base = doc.get(spec.get("extends", ""), {})
    return [*spec.get("before_script", base.get("before_script", [])), *spec["script"]]


def kind(line: str) -> str:
    """What a recipe's shell line does: apt, install, setup, shard or merge."""
    for name, mark in (("apt", "apt-get install"), ("install", "pip install"), ("setup", "ftlab setup"),
                       ("shard", "ftlab matrix"), ("merge", "ftlab report merge")):
        if mark in line:
            return name
    return "other: " + line


def test_github_workflow_parses_and_fans_out_as_stated():
    doc = github()
    assert set(doc["jobs"]) == {"shard", "merge"}
    shards = doc["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(doc["env"]["SHARDS"]) + 1))
    assert doc["jobs"]["merge"]["needs"] == "shard" and doc["jobs"]["merge"]["if"] == "always()"
    assert "--privileged" in doc["jobs"]["shard"]["container"]["options"]
    for job in doc["jobs"].values():
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_gitlab_pipeline_parses_and_fans_out_as_stated():
    doc = gitlab()
    jobs = {k: v for k, v in doc.items() if isinstance(v, dict) and "script" in v}
    assert set(jobs) == {"ftlab-shard", "ftlab-report"}
    for job in jobs.values():
        assert job["stage"] in doc["stages"]
        assert job.get("extends") in doc
    assert jobs["ftlab-shard"]["parallel"] == len(github()["jobs"]["shard"]["strategy"]["matrix"]["shard"])
    assert jobs["ftlab-report"]["needs"] == ["ftlab-shard"]
    assert jobs["ftlab-shard"]["variables"] == {"SHARD": "$CI_NODE_INDEX", "SHARDS": "$CI_NODE_TOTAL"}


def test_both_recipes_run_the_same_commands_in_the_same_order():
    assert github_lines("shard") == gitlab_lines("ftlab-shard")
    assert github_lines("merge") == gitlab_lines("ftlab-report")
    assert [kind(x) for x in github_lines("shard")] == ["apt", "install", "setup", "shard"]
    assert [kind(x) for x in github_lines("merge")] == ["apt", "install", "merge"]
    gh, gl = github()["env"], gitlab()["variables"]
    for name in ("FTLAB_REPO", "FTLAB_REF", "FTLAB_VENV", "FTLAB_MATRIX_ARGS"):
        assert gh[name] == gl[name], name


def test_the_lab_is_installed_pinned_from_a_placeholder_that_is_no_host():
    install = github_lines("shard")[1]
    assert 'pip install -q "ftps-traversal-lab @ git+$FTLAB_REPO@$FTLAB_REF"' in install
    repo = github()["env"]["FTLAB_REPO"]
    host = re.match(r"https://([^/]+)/", repo).group(1)
    assert host.endswith(".invalid"), f"{repo}: the placeholder must not name a real host (RFC 2606 .invalid)"
    assert github()["env"]["FTLAB_REF"], "a pinned version"
    assert "./setup.sh" not in (RECIPES / "github-actions.yml").read_text() + (RECIPES / "gitlab-ci.yml").read_text()


def test_the_recipes_apt_line_names_only_packages_of_tools():
    tools = {line.split("#", 1)[0].split()[0] for line in (ROOT / "tools").read_text().splitlines()
             if line.split("#", 1)[0].split()}
    apt = shlex.split(github_lines("shard")[0].split("apt-get install", 1)[1])
    named = {w for w in apt if not w.startswith("-")}
    assert named - tools <= {"git", "ca-certificates"}, "what pip needs to build the lab must be in tools"
    assert {"python3-venv", "gcc", "libkrb5-dev", "libnetfilter-queue-dev"} <= named


def test_junit_is_published_from_the_merged_report():
    merge = github_lines("merge")[-1]
    out = shlex.split(merge)[shlex.split(merge).index("--out") + 1]
    steps = github()["jobs"]["merge"]["steps"]
    publish = [s for s in steps if "junit" in s.get("uses", "")]
    assert len(publish) == 1 and publish[0]["if"] == "always()"
    assert publish[0]["with"]["report_paths"] == f"{out}/junit.xml"
    assert steps.index(publish[0]) > [i for i, s in enumerate(steps) if s.get("run") == merge][0]
    report = gitlab()["ftlab-report"]["artifacts"]
    assert report["when"] == "always" and report["reports"]["junit"] == f"{out}/junit.xml"


def test_the_shard_job_fails_on_bad_input_and_lab_errors_only():
    shard = github_lines("shard")[-1]
    for rc, ok in ((0, True), (1, True), (2, False), (3, False)):
        line = shard.replace("$FTLAB_VENV/bin/ftlab matrix", f"exit_with {rc}", 1)
        done = subprocess.run(["bash", "-c", f"exit_with() {{ return {rc}; }}; {line}"], capture_output=True)
        assert (done.returncode == 0) == ok, (rc, done)


# -- the installed package ships what the engine loads by name -----------------------------------------

def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_on_disk_is_in_the_package_list():
    listed = set(setuptools_config()["packages"])
    found = {".".join(d.relative_to(ROOT).parts) for top in ("lab", "nat", "firewall")
             for d in [ROOT / top, *(ROOT / top).rglob("*")] if (d / "__init__.py").is_file()}
    assert listed == found | {"lab._shipped"}, "pyproject.toml [tool.setuptools] packages: add the new package"
    assert setuptools_config()["package-dir"] == {"lab._shipped": "."}


def tracked(*tops: str) -> list[str]:
    done = subprocess.run(["git", "-C", str(ROOT), "ls-files", *tops], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return done.stdout.split()


def test_the_shipped_data_is_package_data():
    patterns = setuptools_config()["package-data"]["lab._shipped"]
    shipped = {f for p in patterns for f in glob.glob(p, root_dir=ROOT) if (ROOT / f).is_file()}
    wanted = set(tracked("topologies", "scenarios", "course")) | {
        "tools", "setup.sh", "reports/README.md", "reports/results.schema.json"}
    assert wanted - shipped == set(), "files the engine loads that an installed lab would lack"
    assert not [f for f in shipped if fnmatch.fnmatch(f, "reports/run-*")]


def test_a_merge_of_shards_run_with_expect_keeps_their_verdict():
    """The recipes' merge job gives the verdict: shards run with --expect merge into a report judged by
    the expectations (before: the merged document lost `expect_file`, so an unmet expectation whose
    cell was as predicted merged as exit 0, and junit.xml had no failure)."""
    from lab.report import junit, merge, results

    def shard(k: int, met: bool) -> dict:
        doc = results.new_run(run_id=f"r{k}", shard=f"{k}/2", expect_file="expect.yaml")
        doc["scenarios"] = [{"id": f"net{k}/tls/port", "topology": f"net{k}", "outcome": "fail", "stage": "data",
                             "reason": "dropped", "expected": "fail", "matches": True, "expect_met": met,
                             "expect": {"outcome": "fail" if met else "pass", "line": 4, "pattern": "*/port"}}]
        return doc

    good = merge.merge([shard(1, True), shard(2, True)])
    assert good["expect_file"] == "expect.yaml" and results.exit_code(good) == 0
    bad = merge.merge([shard(1, True), shard(2, False)])
    assert results.exit_code(bad) == 1
    failures = list(junit.build(bad).iter("failure"))
    assert [f.get("type") for f in failures] == ["expectation-unmet"]
    assert "expect.yaml:4" in failures[0].get("message")
