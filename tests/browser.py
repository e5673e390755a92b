"""A real headless browser (Debian's chromium, found by the ``chromium`` fixture in conftest.py) for
the TensorBoard tests: the text a page renders, read over the DevTools protocol."""

from __future__ import annotations

import asyncio
import math
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Under load a page can stay at its head and noscript text for minutes; one still without the text
# wanted is loaded again (bench/results/ci_timing.md).
RELOAD_S = 60

# Text of the whole page, shadow roots included (TensorBoard's HParams plugin renders in them).
DEEP_TEXT = """(() => { const out = []; const walk = (n) => {
  if (n.shadowRoot) walk(n.shadowRoot);
  for (const c of n.childNodes) {
    if (c.nodeType === 3) out.push(c.textContent);
    else if (!['SCRIPT', 'STYLE'].includes(c.nodeName)) walk(c);
  } };
  walk(document); return out.join(' '); })()"""


async def _rendered_text(debug_port: int, url: str, want: list[str], timeout_s: float = 300) -> str:
    """Navigate through the DevTools protocol and poll the rendered text until ``want`` shows."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{debug_port}/json") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10**6))

            async def call(method: str, params: dict | None = None) -> dict:
                i = next(ids)
                await ws.send_json({"id": i, "method": method, "params": params or {}})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == i:
                        return msg

            text, deadline, loaded = "", time.monotonic() + timeout_s, -math.inf
            while time.monotonic() < deadline and not all(w in text for w in want):
                if time.monotonic() - loaded > RELOAD_S:  # a page the app never started on: load it again
                    await call("Page.navigate", {"url": url})
                    loaded = time.monotonic()
                await asyncio.sleep(1)
                reply = await call("Runtime.evaluate", {"expression": DEEP_TEXT, "returnByValue": True})
                text = reply["result"]["result"].get("value", "")
            return text


def rendered_text(debug_port: int, url: str, want: list[str], timeout_s: float = 300) -> str:
    return asyncio.run(_rendered_text(debug_port, url, want, timeout_s))


class DevTools:
    """A headless chromium with its DevTools port open, for as long as the block runs."""

    def __init__(self, chromium: str, tmp_path: Path):
        self.chromium, self.profile = chromium, tempfile.mkdtemp(dir=tmp_path)

    def __enter__(self) -> int:
        pytest.importorskip("aiohttp")
        self.proc = subprocess.Popen([self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-port=0", "--window-size=1400,900", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 300
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return int(port_file.read_text().split()[0])

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
