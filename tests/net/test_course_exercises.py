"""Every exercise of the course, with real cells: its starting files fail the check (exit 1) and its
reference solution passes (exit 0). The two checks of an exercise run at once (each in sandboxes
of its own), with only the cells the exercise's goals name and no throughput phase."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lab.course import exercise, progress

FTLAB = [sys.executable, "-m", "lab.cli", "course"]


@pytest.mark.network
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", exercise.ids())
def test_unsolved_fails_and_the_reference_passes(name, tmp_path):
    folder = tmp_path / "student"
    started = subprocess.run([*FTLAB, "start", name, str(folder)], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    t0 = time.monotonic()
    unsolved = subprocess.Popen([*FTLAB, "check", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    reference = subprocess.Popen([*FTLAB, "check", "--reference", name], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    out_ref, _ = reference.communicate(timeout=170)
    out_unsolved, _ = unsolved.communicate(timeout=170)
    took = time.monotonic() - t0
    assert reference.returncode == 0, out_ref
    assert "solved: " in out_ref and "FAIL" not in out_ref
    assert unsolved.returncode == 1, out_unsolved
    # it fails for real: graded goals (no problem with the files), at least one explained failure
    assert "FAIL goal" in out_unsolved and "problem(s)" not in out_unsolved, out_unsolved
    assert "not solved: " in out_unsolved
    st = progress.load(folder)
    assert len(st.checks) == 1 and not st.solved and st.checks[0]["failed"]
    print(f"{name}: both checks in {took:.1f} s")


@pytest.mark.network
@pytest.mark.timeout(120)
def test_a_failing_cell_is_explained_with_the_device_packet_and_rule(tmp_path):
    folder = tmp_path / "student"
    subprocess.run([*FTLAB, "start", "repair-ruleset", str(folder)], check=True, capture_output=True, timeout=60)
    done = subprocess.run([*FTLAB, "check", str(folder)], capture_output=True, text=True, timeout=110)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("  FAIL goal 1: tls/epsv passes")
    observed = lines[at + 1]
    # the device, the packet (a SYN to the passive range) and the rule of the student's file, by line
    assert observed.startswith("       observed: fail at data-connect by fw: fw dropped tcp 198.51.100.10:"), observed
    assert "-> 10.1.1.10:600" in observed and "[S]" in observed
    assert f"dropped by {folder / 'fw.rules'}:".replace(str(folder) + "/", "") in observed or "fw.rules:" in observed
    implicit = lines[lines.index("  FAIL goal 2: implicit/epsv passes") + 1]
    assert "fail at connect by fw" in implicit and ":990 [S]" in implicit


@pytest.mark.network
@pytest.mark.timeout(120)
def test_the_students_shell_runs_the_server_the_client_and_says_what_devices_saw(tmp_path):
    folder = tmp_path / "student"
    subprocess.run([*FTLAB, "start", "dynamic-ccc", str(folder)], check=True, capture_output=True, timeout=60)
    (folder / "server.ftpdata").write_text("PASSIVEDATAPORTS (60000,60100)\nTLSRFCLEVEL RFC4217\nSECURE_CTRLCONN CLEAR\n")
    commands = ("client ftlab client $GET\n"
                "events\n"
                "client ftlab client ftp://$USER_PASS@$SERVER/data.bin --security tls-ccc --data pasv --ca $CA "
                "--timeout 8 get -o /dev/null\n"
                "events\n"
                "exit\n")
    done = subprocess.run([*FTLAB, "shell", str(folder)], input=commands, capture_output=True, text=True, timeout=110)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "the FTP server runs in server" in out and "the client dials 203.0.113.10" in out
    # the word `client` after the node's name stays a word: the lab's client ran (and tls/pasv failed at fw)
    assert "data-connect failed" in out, out
    assert "fw saw TLS on the control connection" in out and "fw dropped tcp 198.51.100.10:" in out
    # tls-ccc: the file arrived, through a pinhole the filter opened after CCC
    assert "1048576 bytes  sha256 " in out, out
    assert "fw opened a pinhole" in out and "fw let a connection through its pinhole" in out
    assert not list((folder / ".course" / "shell").glob("*.pid"))


@pytest.mark.network
@pytest.mark.timeout(120)
def test_the_live_view_of_a_shell_shows_the_devices_events(tmp_path):
    import json
    import os
    import re
    import threading
    import urllib.request

    folder = tmp_path / "student"
    subprocess.run([*FTLAB, "start", "dynamic-ccc", str(folder)], check=True, capture_output=True, timeout=60)
    shell = subprocess.Popen([*FTLAB, "shell", str(folder), "--watch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        url = None
        while url is None:                       # the view is served before the network comes up
            line = shell.stderr.readline()
            assert line, "the shell ended before its live view"
            if m := re.match(r"live view: (http://127\.0\.0\.1:\d+/)", line):
                url = m.group(1)
        assert "ftlab live: dynamic-ccc" in urllib.request.urlopen(url, timeout=5).read().decode()
        said: list[str] = []
        for stream in (shell.stdout, shell.stderr):      # in chunks: the prompt ends no line
            threading.Thread(target=lambda s=stream: said.extend(iter(lambda: os.read(s.fileno(), 4096).decode(errors="replace"), "")),
                             daemon=True).start()
        shell.stdin.write("client ftlab client $GET\n")
        shell.stdin.flush()
        deadline = time.monotonic() + 60
        texts: list[str] = []
        while time.monotonic() < deadline and not any("dropped tcp" in t and ":600" in t for t in texts):
            time.sleep(0.5)
            texts = [e["text"] for e in json.loads(urllib.request.urlopen(url + "events?since=0", timeout=5).read())["events"]]
        assert any("fw saw TLS on the control connection" in t for t in texts), texts
        assert any(t.startswith("fw dropped tcp 198.51.100.10:") and "(control channel is TLS" in t for t in texts), texts
        # while a node's command runs, Mininet hands what is typed to that command: wait for the prompt
        ended = time.monotonic() + 30
        while time.monotonic() < ended and "mininet> " not in "".join(said).partition("data-connect failed")[2]:
            time.sleep(0.2)
        shell.stdin.write("exit\n")
        shell.stdin.flush()
        assert shell.wait(timeout=60) == 0
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
