"""Screenshots of the Prefect UI in headless Chromium, logged in as a user would be.

The UI of a server with an auth string asks for the password and keeps it in localStorage (`prefect-password`,
base64). Chromium is driven through its DevTools protocol (a websocket; `websockets` comes with Prefect): open the
UI's origin, store the password there, then load the page and capture it.
"""
from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from pathlib import Path

import httpx

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-allow-origins=*", "--window-size=1400,1000"]


class _Page:
    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 << 20, open_timeout=30)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})


def screenshots(chromium: str, port: int, user_data: Path, origin: str, auth: str | None,
                pages: dict[Path, str], settle_s: float = 8.0, drawn_bytes: int = 20_000, wait_s: float = 60.0) -> None:
    """Save a PNG of each page (path -> URL); `auth` is the server's user:password, or None for an open server. A page
    is taken again every 2 s after `settle_s`, up to `wait_s`, while its PNG is under `drawn_bytes` (a page not drawn
    yet is a few KB of blank: on a loaded machine the UI takes longer than the settle time to draw)."""
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
                             f"--user-data-dir={user_data}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                page = next(t for t in targets if t.get("type") == "page")
                break
            except (httpx.HTTPError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium's DevTools endpoint did not come up") from None
                time.sleep(0.5)
        tab = _Page(page["webSocketDebuggerUrl"])
        tab.call("Page.enable")
        tab.call("Page.navigate", url=origin)
        time.sleep(2)
        if auth:
            tab.call("Runtime.evaluate", expression=f"localStorage.setItem('prefect-password', btoa({json.dumps(auth)}))")
        for path, url in pages.items():
            tab.call("Page.navigate", url=url)
            time.sleep(settle_s)
            drawn_by = time.monotonic() + wait_s - settle_s
            while len(png := base64.b64decode(tab.call("Page.captureScreenshot", format="png")["data"])) < drawn_bytes \
                    and time.monotonic() < drawn_by:
                time.sleep(2)
            path.write_bytes(png)
        tab.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
