"""The course's live view in a real headless Chromium: the picture, each device's events as they happen."""

from __future__ import annotations

import http.client
import json
import shutil

import pytest

from lab.network.live import LiveView
from lab.topology import loader

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def event(ts: float, **kw) -> str:
    return json.dumps({"ts": ts, "device": "fw", **kw}) + "\n"


@pytest.fixture
def view(tmp_path):
    events = tmp_path / "events.jsonl"
    v = LiveView(loader.load("dynamic-filter"), lambda: [events], title="dynamic-ccc")
    v.start()
    yield v, events
    v.stop()


def get(view: LiveView, path: str, host: str | None = None) -> tuple[int, bytes]:
    port = view.server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    r = conn.getresponse()
    return r.status, r.read()


def test_it_listens_on_loopback_only_and_serves_two_things(view):
    v, events = view
    assert v.server.server_address[0] == "127.0.0.1" and v.url.startswith("http://127.0.0.1:")
    assert get(v, "/events?since=0") == (200, b'{"next": 0, "reset": false, "events": []}')
    events.write_text(event(10.0, type="pinhole-open", src="198.51.100.10", dport=60001)
                      + event(11.5, type="drop", proto="tcp", src="a", sport=1, dst="b", dport=2, flags="S"))
    doc = json.loads(get(v, "/events?since=1")[1])
    assert doc["next"] == 2 and [e["text"] for e in doc["events"]] == ["fw dropped tcp a:1 -> b:2 [S]"]
    assert doc["events"][0]["t"] == 1.5
    assert json.loads(get(v, "/events?since=9")[1])["reset"] is True
    assert get(v, "/etc/passwd")[0] == 404
    assert get(v, "/", host="attacker.example:80")[0] == 403      # DNS rebinding
    assert get(v, "/", host=f"localhost:{v.server.server_address[1]}")[0] == 200


@pytest.mark.timeout(90)
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
def test_the_page_shows_the_picture_and_events_as_they_happen(view, tmp_path):
    from playwright.sync_api import sync_playwright

    v, events = view
    events.write_text(event(100.0, type="ready", program="dynamic"))
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(v.url)
            assert page.locator("img.diagram").evaluate("i => i.naturalWidth") > 100
            assert page.locator("#dev-fw h2").inner_text() == "fw"
            page.locator("#dev-fw li").first.wait_for(timeout=5000)
            assert "fw (dynamic) is ready" in page.locator("#dev-fw li").first.inner_text()
            # events appended while the page is open appear, in words, a hostile one as text
            with open(events, "a") as f:
                f.write(event(101.25, type="tls-detected", conn="198.51.100.10:4>203.0.113.10:21", direction="c2s"))
                f.write(event(102.5, type="drop", proto="tcp", src="198.51.100.10", sport=5, dst="203.0.113.10",
                              dport=60001, flags="S", reason="<img src=x onerror=alert(1)>"))
            page.locator("#dev-fw li.drop").wait_for(timeout=5000)
            drop = page.locator("#dev-fw li.drop").inner_text()
            assert drop.startswith("2.50 s fw dropped tcp 198.51.100.10:5 -> 203.0.113.10:60001 [S]")
            assert "<img src=x onerror=alert(1)>" in drop and page.locator("#dev-fw img").count() == 0
            assert "cannot read it any more" in page.locator("#dev-fw li.tls-detected").inner_text()
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert (tmp_path / "live.png").stat().st_size > 10_000
