"""Load test of a running `rf.serve`: N visitors for T seconds, each one streaming or waiting its turn.

    python -m rf.serve pace=false queue_size=19 &          # the server (prints its address)
    python experiments/serve/load.py --url http://127.0.0.1:8000/ --visitors 20 --seconds 60 --pid $! --out load.json

Every visitor does what a person does with the page, over and over until T: open the socket, press Start, wait
its turn (hearing its position), watch for `--watch` seconds, close the page (which frees the slot at once),
open it again. The frames are counted where they arrive, on this side.

Reported (printed, and written to --out as JSON):
    fps              frames received per second of the whole run, all visitors together: the running stream's
                     frame rate as the visitors see it (one stream at a time; handovers included)
    answered         Start messages answered by started / queued / refused, and the slowest answer (s)
    unanswered       visitors who pressed Start and heard nothing within --answer-seconds
    errors           `error` messages and sockets that ended without being closed by this side
    refusals         `refused` messages (the documented answer of a full queue)
    positions        the largest queue position told
    rss_mb           the server's resident memory once a second (--pid: /proc/PID/status), for flatness
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp

RED = "a red circle moving fast to the right on a striped background"


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Totals:
    def __init__(self):
        self.frames = 0
        self.starts = 0
        self.answers: list[float] = []  # seconds from Start to started / queued / refused
        self.unanswered = 0
        self.errors: list[str] = []
        self.refusals = 0
        self.streams = 0
        self.max_position = 0
        self.told = set()  # visitors told they stream or their position


async def visitor(k: int, url: str, params: dict, end: float, watch: float, answer_s: float, totals: Totals) -> None:
    ws_url = url.rstrip("/") + "/ws"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            async with session.ws_connect(ws_url, params=params, max_msg_size=0) as ws:
                await ws.receive_json(timeout=answer_s)  # hello
                await ws.send_json({"type": "start", "prompt": RED})
                totals.starts += 1
                sent, answered, started = time.monotonic(), False, None
                while True:
                    now = time.monotonic()
                    leave = end if started is None else min(end, started + watch)
                    if now >= leave:
                        break
                    timeout = leave - now if answered else min(leave - now, sent + answer_s - now)
                    try:
                        msg = await ws.receive(timeout=max(timeout, 0.01))
                    except asyncio.TimeoutError:
                        if not answered and time.monotonic() >= sent + answer_s:
                            totals.unanswered += 1
                            totals.errors.append(f"visitor {k}: no answer to Start in {answer_s} s")
                            return
                        continue
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        totals.frames += 1
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        if msg.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) or not answered:
                            totals.errors.append(f"visitor {k}: socket ended ({msg.type.name})")
                        break
                    data = json.loads(msg.data)
                    kind = data["type"]
                    if kind in ("started", "queued", "refused") and not answered:
                        answered = True
                        totals.answers.append(time.monotonic() - sent)
                    if kind in ("started", "queued"):
                        totals.told.add(k)
                    if kind == "started":
                        started = time.monotonic()
                        totals.streams += 1
                    elif kind == "queued":
                        totals.max_position = max(totals.max_position, data["position"])
                    elif kind == "refused":
                        totals.refusals += 1
                        await asyncio.sleep(1.0)
                        break
                    elif kind == "ended" and started is not None:  # max_seconds: start again
                        await ws.send_json({"type": "start", "prompt": RED})
                        started, answered, sent = None, False, time.monotonic()
                    elif kind == "error":
                        totals.errors.append(f"visitor {k}: {data['message']}")
            # leaving the block closes the socket: the page is closed, its slot or place is freed at once


async def run(url: str, visitors: int, seconds: float, watch: float, token: str | None, pid: int | None,
              answer_s: float) -> dict:  # fmt: skip
    totals, rss = Totals(), []
    params = {"token": token} if token else {}
    begin = time.monotonic()
    end = begin + seconds

    async def sample():
        while time.monotonic() < end:
            if pid is not None and (mb := rss_mb(pid)) is not None:
                rss.append(round(mb, 1))
            await asyncio.sleep(1.0)

    tasks = [visitor(k, url, params, end, watch, answer_s, totals) for k in range(visitors)]
    results = await asyncio.gather(sample(), *tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            totals.errors.append(f"{type(r).__name__}: {r}")
    wall = time.monotonic() - begin
    return {
        "visitors": visitors,
        "seconds": seconds,
        "watch": watch,
        "wall": round(wall, 2),
        "frames": totals.frames,
        "fps": round(totals.frames / wall, 2),
        "streams": totals.streams,
        "starts": totals.starts,
        "answered": len(totals.answers),
        "slowest_answer_s": round(max(totals.answers, default=0.0), 3),
        "unanswered": totals.unanswered,
        "told": len(totals.told),
        "max_position": totals.max_position,
        "refusals": totals.refusals,
        "errors": totals.errors,
        "rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--watch", type=float, default=3.0, help="seconds each visitor watches before leaving")
    parser.add_argument("--token", default=None)
    parser.add_argument("--pid", type=int, default=None, help="the server's process id, to sample its memory")
    parser.add_argument("--answer-seconds", type=float, default=5.0, help="a Start unanswered this long is an error")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report = asyncio.run(run(args.url, args.visitors, args.seconds, args.watch, args.token, args.pid,
                             args.answer_seconds))  # fmt: skip
    rss = report["rss_mb"]
    memory = f"server RSS {rss[0]} -> {rss[-1]} MB" if rss else "server RSS not sampled (--pid)"
    print(f"{args.visitors} visitors, {report['wall']:.0f} s: {report['fps']:.1f} frames/s received, "
          f"{report['streams']} streams, {report['told']} visitors told their turn, largest position "
          f"{report['max_position']}, slowest answer {report['slowest_answer_s']} s, {report['refusals']} refusals, "
          f"{len(report['errors'])} errors, {memory}")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
