"""The live view: a page on 127.0.0.1 that shows the picture and, as they happen, what each device saw.

    view = LiveView(model, lambda: [events_path], title="dynamic-ccc")
    view.start()            # http://127.0.0.1:PORT/  (a thread; view.stop() ends it)

`ftlab shell NAME --watch` (lab.network.cli), `ftlab course shell DIR --watch` and `ftlab course
check DIR --watch` (lab.course) serve it. The page is one self-contained HTML document: the
network's diagram (lab.topology.diagram, a data URI), then one column per device on the path, each
event in words (lab.devkit.events.describe, as the shells' `events` says it) with its time,
appended as it happens: the page asks `/events?since=N` twice a second. The
server listens on 127.0.0.1 only, answers only requests whose Host is that address (or
localhost) with its port - a page elsewhere cannot read it through DNS rebinding - and serves
nothing but `/` and `/events`. Event text is put on the page as text (textContent), never as HTML.

It runs in the ftlab process the user started, outside the network's sandbox (whose loopback is
its own), and reads the events files the devices in the sandbox append to.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from lab.devkit.events import describe, read
from lab.topology import diagram

HOST = "127.0.0.1"
MAX_EVENTS = 5000


def collect(paths: list[Path]) -> list[dict]:
    """Every event of the files, in time order, in words."""
    found: list[dict] = []
    for p in paths:
        found += read(p)[0]
    found.sort(key=lambda e: float(e.get("ts") or 0))
    t0 = float(found[0].get("ts") or 0) if found else 0.0
    return [{"t": round(float(e.get("ts") or 0) - t0, 2), "device": str(e.get("device", "?")),
             "type": str(e.get("type", "?")), "text": describe(e)} for e in found[:MAX_EVENTS]]


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ftlab live: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }}
h1 {{ font-size: 1.3em; }} img.diagram {{ max-width: 100%; border: 1px solid #ddd; }}
#devices {{ display: flex; gap: 1em; flex-wrap: wrap; }}
.device {{ flex: 1 1 22em; border: 1px solid #ccc; border-radius: 4px; padding: .5em; }}
.device h2 {{ font-size: 1.05em; margin: 0 0 .3em; }}
.device ol {{ margin: 0; padding-left: 1.2em; font-family: ui-monospace, monospace; font-size: 12px; }}
li.drop {{ color: #b00; }} li.pinhole-open, li.pinhole-used, li.mapping-open, li.rewrite {{ color: #060; }}
li.tls-detected {{ color: #555; }} #status {{ color: #777; }}
</style></head><body>
<h1>{title}</h1>
<p>{description}</p>
{diagram}
<p id="status">waiting for events ...</p>
<div id="devices">{columns}</div>
<script>
"use strict";
let since = 0;
function column(device) {{
  let col = document.getElementById("dev-" + device);
  if (!col) {{
    col = document.createElement("div"); col.className = "device"; col.id = "dev-" + device;
    const h = document.createElement("h2"); h.textContent = device; col.appendChild(h);
    col.appendChild(document.createElement("ol"));
    document.getElementById("devices").appendChild(col);
  }}
  return col.querySelector("ol");
}}
async function poll() {{
  try {{
    const r = await fetch("events?since=" + since, {{cache: "no-store"}});
    const doc = await r.json();
    if (doc.reset) {{ document.querySelectorAll(".device ol").forEach(ol => ol.replaceChildren()); }}
    for (const e of doc.events) {{
      const li = document.createElement("li");
      li.className = e.type;
      li.textContent = e.t.toFixed(2) + " s  " + e.text;
      column(e.device).appendChild(li);
    }}
    since = doc.next;
    document.getElementById("status").textContent = since + " event(s); updated " + new Date().toLocaleTimeString();
  }} catch (err) {{
    document.getElementById("status").textContent = "the lab has stopped (" + err + ")";
  }}
  setTimeout(poll, 500);
}}
poll();
</script></body></html>
"""


class LiveView:
    def __init__(self, model, sources: Callable[[], list[Path]], title: str = "", port: int = 0):
        self.model = model
        self.sources = sources
        self.title = title or model.name
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self._page: bytes | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}/" if self.server else ""

    def page(self) -> bytes:
        if self._page is None:
            uri = diagram.data_uri(self.model)
            devices = [n.name for n in self.model.devices_on_path()]
            self._page = PAGE.format(
                title=html.escape(f"ftlab live: {self.title}"), description=html.escape(self.model.description),
                diagram=f'<img class="diagram" alt="the network" src="{uri}">' if uri else "",
                columns="".join(f'<div class="device" id="dev-{html.escape(d)}"><h2>{html.escape(d)}</h2><ol></ol></div>'
                                for d in devices)).encode()
        return self._page

    def events(self, since: int) -> dict:
        found = collect(self.sources())
        reset = since > len(found)          # the files were made again (a new run): start over
        start = 0 if reset else since
        return {"next": len(found), "reset": reset, "events": found[start:]}

    def start(self) -> str:
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:       # quiet: the terminal is the student's
                pass

            def do_GET(self) -> None:
                port = view.server.server_address[1]
                if self.headers.get("Host") not in (f"{HOST}:{port}", f"localhost:{port}"):
                    self.send_error(403, "only for this machine's own browser")
                    return
                url = urlparse(self.path)
                if url.path == "/":
                    self.reply(200, "text/html; charset=utf-8", view.page())
                elif url.path == "/events":
                    try:
                        since = max(0, int(parse_qs(url.query).get("since", ["0"])[0]))
                    except ValueError:
                        since = 0
                    self.reply(200, "application/json", json.dumps(view.events(since)).encode())
                else:
                    self.send_error(404)

            def reply(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy", "default-src 'none'; img-src data:; "
                                 "style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((HOST, self.port), Handler)
        self.server.daemon_threads = True
        self.page()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="ftlab-live")
        self.thread.start()
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
