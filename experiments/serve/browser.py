"""Measure the live page as a person sees it: a real headless Chromium draws the stream, driven over the DevTools
protocol (aiohttp only: no Playwright, so it runs where only rf's own dependencies and a Chromium binary are).

    python -m rf.serve ... &                                   (any model; on a GPU machine the full one)
    python experiments/serve/browser.py --url http://127.0.0.1:8000/ --chromium chromium --seconds 20 --switch-at 10 \\
        --out browser.json

It opens the page, types --prompt and presses Start, types --switch-prompt and presses Enter at --switch-at seconds
after the first frame drawn, presses Stop after --seconds, and reports what the page itself measured
(`window.rfStats`, rf/serve/page/app.js), all on the page's clock:

    fps_drawn          frames drawn on the canvas per second, first frame to last
    first_frame_ms     per chunk: the server's decode stamp -> the chunk's first frame drawn; p50 / p90 / max
                       (the server and the browser on one machine: one clock), the sum of
    in_page_ms         ... the stamp -> the chunk's first image decoded in the page, and
    draw_ms            ... that image -> drawn (chunks with no backlog): the browser's own drawing
    setup_draw_ms      the page's blank first draw when it learns the frame size, before any chunk
    switch_latency_s   the switch typed -> the first frame of the new prompt drawn
    backlogged_chunks  chunks whose first frame waited behind earlier frames (the page plays a backlog at the
                       video's fps)

--chromium is any Chromium or headless shell; extra library folders go in --library-path (a self-contained
headless shell such as @sparticuz/chromium's brings libnss3 and its kin beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from measure import RED, YELLOW, quantiles  # the headless client beside this file: its prompts and quantiles

FLAGS = [  # what Playwright passes to keep a headless page's timers and drawing at full rate
    "--headless", "--no-sandbox", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows", "--disable-dev-shm-usage", "--mute-audio", "--window-size=1280,900",
]  # fmt: skip


class Page:
    """One page target of a Chromium started with --remote-debugging-port, spoken to over its WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:  # events (no domain is enabled, so few) are skipped until our answer comes
            msg = await self.ws.receive_json(timeout=60)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def until(self, condition: str, timeout: float, every: float = 0.05) -> None:
        end = time.monotonic() + timeout
        while not await self.js(condition):
            if time.monotonic() > end:
                raise TimeoutError(f"waited {timeout:g} s for {condition}: rfStats = {await self.js('window.rfStats')}")
            await asyncio.sleep(every)


def launch(
    chromium: str, library_path: str | None, fonts: str | None, profile: str, flags: list[str]
) -> tuple[subprocess.Popen, int, list]:
    """Start Chromium with a DevTools port of its choosing; returns the process, the port and its stderr so far
    (read on by a thread, so a chatty browser never blocks on a full pipe; its tail goes into any error)."""
    env = dict(os.environ)
    if library_path:
        env["LD_LIBRARY_PATH"] = library_path + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    if fonts:  # a folder with fonts.conf, for a machine without /etc/fonts (chromium.sh unpack makes one)
        env["FONTCONFIG_PATH"] = fonts
    binary = shutil.which(chromium) or chromium
    cmd = [binary, *FLAGS, *flags, "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]
    # its own process group: stop() ends the renderer, GPU and crash-handler processes too, not only the browser
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    seen = []
    for line in proc.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        seen.append(line)
        found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if found:
            threading.Thread(target=lambda: seen.extend(proc.stderr), daemon=True).start()
            return proc, int(found.group(1)), seen
    raise RuntimeError(f"{binary} ended before listening (exit {proc.wait()}): {''.join(seen)[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the browser's whole process group, then SIGKILL to what is left after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the browser
    except ProcessLookupError:
        return  # the group is gone
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def measure(url: str, chromium: str, library_path: str | None, fonts: str | None, prompt: str,
                  switch_prompt: str, seconds: float, switch_at: float | None, flags: list[str]) -> dict:  # fmt: skip
    # Chromium's helpers may still be writing the profile as they exit: what they leave is not an error here
    with tempfile.TemporaryDirectory(prefix="rf-browser-", ignore_cleanup_errors=True) as profile:
        proc, port, stderr = launch(chromium, library_path, fonts, profile, flags)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.put(f"http://127.0.0.1:{port}/json/new?{url}") as r:
                    target = await r.json()
                async with session.get(f"http://127.0.0.1:{port}/json/version") as r:
                    version = (await r.json())["Browser"]
                async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    return await drive(Page(ws), version, url, prompt, switch_prompt, seconds, switch_at)
        except (aiohttp.ClientError, RuntimeError, TimeoutError) as error:
            tail = "".join(stderr[-40:]) or "(nothing)\n"
            raise RuntimeError(f"{error!r}; the browser (exit {proc.poll()}) printed:\n{tail}") from error
        finally:
            stop(proc)


async def drive(page: Page, version: str, url: str, prompt: str, switch_prompt: str, seconds: float,
                switch_at: float | None) -> dict:  # fmt: skip
    await page.until("window.rfStats && window.rfStats.state === 'idle'", timeout=60)
    await page.js(f"document.getElementById('prompt').value = {json.dumps(prompt)}; "
                  "document.getElementById('start').click()")  # fmt: skip
    await page.until("window.rfStats.framesDrawn > 0", timeout=600)  # a fresh fast=exact server compiles first
    first = time.monotonic()
    switched = switch_at is None
    while time.monotonic() - first < seconds:
        if not switched and time.monotonic() - first >= switch_at:
            await page.js(  # typed, then Enter: what a person does
                f"const p = document.getElementById('prompt'); p.value = {json.dumps(switch_prompt)}; "
                "p.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}))"
            )
            switched = True
        await asyncio.sleep(0.1)
        if await page.js("window.rfStats.state") == "ended":
            break
    stats = await page.js(
        "(() => { const s = window.rfStats; document.getElementById('stop').click(); return s; })()"
    )  # fmt: skip
    lat = stats["latencies"]  # [{chunk, ms, ready, backlog}] per chunk drawn
    drawn, begun, last = stats["framesDrawn"], stats["firstDrawn"].get("0"), stats["lastDrawn"]
    sent, new_drawn = (stats["switchSent"] or [None])[0], stats["firstDrawn"].get("1")
    return {
        "url": url,
        "browser": version,
        "frames_drawn": drawn,
        "chunks_drawn": len(lat),
        "fps_drawn": round((drawn - 1) / ((last - begun) / 1000), 2) if drawn > 1 and last > begun else None,
        "first_frame_ms": quantiles([x["ms"] for x in lat]),
        "in_page_ms": quantiles([x["ready"] for x in lat]),  # decode stamp -> the chunk's first image decoded here
        "draw_ms": quantiles([x["ms"] - x["ready"] for x in lat if x["backlog"] == 0]),  # decoded -> drawn
        "setup_draw_ms": stats.get("setupDrawMs"),  # the page's blank first draw, before the stream (app.js)
        "backlogged_chunks": sum(x["backlog"] > 0 for x in lat),
        "switch_latency_s": round((new_drawn - sent) / 1000, 3) if sent and new_drawn else None,
        "latencies": lat,
        "errors": stats["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    parser.add_argument("--chromium", default=os.environ.get("RF_CHROMIUM", "chromium"), help="a Chromium binary")
    parser.add_argument("--library-path", default=None, help="folders for LD_LIBRARY_PATH (a bundled headless shell)")
    parser.add_argument("--prompt", default=RED)
    parser.add_argument("--switch-prompt", default=YELLOW)
    parser.add_argument("--seconds", type=float, default=20, help="seconds to watch, from the first frame drawn")
    parser.add_argument("--switch-at", type=float, default=10, help="seconds after the first frame; <0: no switch")
    parser.add_argument("--fonts", default=None, help="a folder with fonts.conf (FONTCONFIG_PATH)")
    parser.add_argument("--flag", action="append", default=[], help="another Chromium flag (repeatable)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    switch_at = args.switch_at if args.switch_at >= 0 else None
    report = asyncio.run(measure(args.url, args.chromium, args.library_path, args.fonts, args.prompt,
                                 args.switch_prompt, args.seconds, switch_at, args.flag))  # fmt: skip
    lat = report["first_frame_ms"]
    print(
        f"{report['browser']}: {report['fps_drawn']} frames/s drawn, decode -> first frame drawn p50 {lat.get('p50')}"
        f" / p90 {lat.get('p90')} / max {lat.get('max')} ms over {report['chunks_drawn']} chunks "
        f"({report['backlogged_chunks']} behind a backlog), switch latency {report['switch_latency_s']} s; in the "
        f"page p50 / max {report['in_page_ms'].get('p50')} / {report['in_page_ms'].get('max')} ms, drawing max "
        f"{report['draw_ms'].get('max')} ms, set-up draw {report['setup_draw_ms']} ms"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
