"""`ftlab shell NAME` as trainers and students use it, with real packets: the picture's FTP server runs and
the banner says how to reach it, `client ftlab client ftp://...` runs the lab's client (words stay as
typed), `events` says in words what each device saw, and `--watch` serves the live page on 127.0.0.1
with the picture and the devices' events as they happen (in a real headless Chromium when it is there).

The shell is driven as a person types: a command, then its output up to the next prompt (while a node's
command runs, Mininet hands whatever is typed to that command)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

FTLAB = [sys.executable, "-m", "lab.cli"]
PROMPT = "mininet> "
CHROMIUM = "/usr/bin/chromium"


class Shell:
    """`ftlab shell ...` under pipes; everything it says (stdout and stderr) in one text."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([*FTLAB, "shell", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.said = ""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 4096), b""):    # the prompt ends no line
            with self.lock:
                self.said += chunk.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match:
        deadline, ended = time.monotonic() + timeout, None
        while True:
            if m := re.compile(pattern).search(self.said, start):
                return m
            if ended is None and self.proc.poll() is not None:
                ended = time.monotonic()        # the shell ended: what it said is read within a moment
            if time.monotonic() > deadline or (ended is not None and time.monotonic() > ended + 1):
                raise AssertionError(f"no {pattern!r} within {timeout} s (exit code {self.proc.poll()}) in:\n{self.said}")
            time.sleep(0.1)

    def run(self, command: str, timeout: float = 60) -> str:
        """Type a command at the prompt; what it printed, up to the next prompt."""
        self.wait_for(re.escape(PROMPT))
        start = len(self.said)
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        end = self.wait_for(re.escape(PROMPT), timeout, start)
        return self.said[start:end.start()]

    def exit(self) -> int:
        self.run_nowait("exit")
        return self.proc.wait(timeout=60)

    def run_nowait(self, command: str) -> None:
        self.wait_for(re.escape(PROMPT))
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def announced(shell: Shell) -> tuple[str, str, str]:
    """The user, the password and the address the banner says the client dials."""
    m = shell.wait_for(r"the FTP server runs in server \(the lab's server[^)]*\), user (\S+), password (\S+); "
                       r"the client dials (\S+) ")
    return m.group(1), m.group(2), m.group(3)


@pytest.mark.network
@pytest.mark.timeout(120)
def test_the_shell_runs_the_server_the_client_and_says_what_devices_saw():
    t0 = time.monotonic()
    shell = Shell("dynamic-filter")
    try:
        user, password, server = announced(shell)
        assert (user, server) == ("lab", "203.0.113.10")
        assert "devices on the path: fw (dynamic-filter)" in shell.said
        # `client` after the node's name stays a word: the lab's client lists the server's root
        listing = shell.run(f"client ftlab client ftp://{user}:{password}@{server}/ ls")
        assert re.search(r"1048576 .*data\.bin", listing), listing
        saw = shell.run("events")
        # plain FTP, active mode: the filter read the PORT and opened a pinhole for the server's data connection
        assert "fw opened a pinhole: 203.0.113.10 -> 198.51.100.10:" in saw, saw
        assert "fw let a connection through its pinhole: 203.0.113.10:20 -> 198.51.100.10:" in saw, saw
        assert re.search(r"announced in 'PORT 198,51,100,10,\d+,\d+' on the control connection 198\.51\.100\.10:", saw), saw
        # TLS hides the 227 from the filter: the data connection is dropped, and `events` says why
        failed = shell.run("client ftlab client $GET")
        assert "data-connect failed" in failed, failed
        saw = shell.run("events")
        assert "fw saw TLS on the control connection 198.51.100.10:" in saw, saw
        assert re.search(r"fw dropped tcp 198\.51\.100\.10:\d+ -> 203\.0\.113\.10:600\d\d \[S\] "
                         r"\(control channel is TLS", saw), saw
        assert "(no device event since the last `events`)" in shell.run("events")
        assert shell.exit() == 0, shell.said
        assert "down in " in shell.said
    finally:
        shell.kill()
    print(f"shell: {time.monotonic() - t0:.1f} s")


def get(url: str, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.mark.network
@pytest.mark.timeout(150)
def test_the_live_view_of_the_shell_shows_each_devices_events(tmp_path):
    t0 = time.monotonic()
    shell = Shell("dynamic-filter", "--watch")
    try:
        url = shell.wait_for(r"live view: (http://127\.0\.0\.1:\d+/)").group(1)     # before the network is up
        status, page = get(url)
        assert status == 200 and b"ftlab live: dynamic-filter: ftlab shell" in page and b'id="dev-fw"' in page
        assert b'src="data:image/png;base64,' in page                                  # the picture
        assert get(url, host="attacker.example")[0] == 403                            # DNS rebinding
        user, password, server = announced(shell)
        workdir = Path(shell.wait_for(r"device logs and events in (\S+)").group(1))
        assert (workdir / "events.jsonl").is_file()            # the page's source, outside the sandbox too
        shell.run(f"client ftlab client ftp://{user}:{password}@{server}/ ls")
        shell.run("client ftlab client $GET")
        deadline, texts = time.monotonic() + 30, []
        while time.monotonic() < deadline and not any("dropped tcp" in t for t in texts):
            events = json.loads(get(url + "events?since=0")[1])["events"]
            texts = [e["text"] for e in events]
            time.sleep(0.3)
        assert {e["device"] for e in events} == {"fw"}
        assert any(t.startswith("fw opened a pinhole: 203.0.113.10 -> 198.51.100.10:") for t in texts), texts
        assert any("fw saw TLS on the control connection" in t for t in texts), texts
        assert any(t.startswith("fw dropped tcp 198.51.100.10:") and "(control channel is TLS" in t for t in texts), texts
        # the page's words are the shell's: `events all` says the same sentences
        said = shell.run("events all")
        assert all(t in said for t in texts), (texts, said)
        if shutil.which(CHROMIUM):
            shot = screenshot(url, tmp_path / "live.png")
            if os.environ.get("FTLAB_LIVE_SCREENSHOT"):
                shutil.copy(shot, os.environ["FTLAB_LIVE_SCREENSHOT"])
        assert shell.exit() == 0, shell.said
        with pytest.raises(OSError):               # the page ends with the shell
            urllib.request.urlopen(url, timeout=2)
        assert not workdir.exists()                # the throw-away workdir goes with it
    finally:
        shell.kill()
    print(f"live view: {time.monotonic() - t0:.1f} s")


def screenshot(url: str, out: Path) -> Path:
    """The page in a real headless Chromium (as tests/unit/test_course_live.py opens it): the picture
    drawn, the device's column with the events, no script error; a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(url)
            assert page.locator("img.diagram").evaluate("i => i.naturalWidth") > 100
            page.locator("#dev-fw li.drop").first.wait_for(timeout=5000)
            assert "fw opened a pinhole" in page.locator("#dev-fw").inner_text()
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    assert problems == [] and out.stat().st_size > 10_000
    return out
