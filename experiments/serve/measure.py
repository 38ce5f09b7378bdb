"""Measure one stream of a running `rf.serve` as a headless client: frame rate, chunk latency, switch latency.

    python -m rf.serve model=wan_1_3b ckpt=PATH ARGS='fast=exact' &       (on the GPU machine; or make serve)
    python experiments/serve/measure.py --url http://127.0.0.1:8000/ --seconds 30 --switch-at 15 --out serve.json

It presses Start with --prompt, receives for --seconds, sends --switch-prompt at --switch-at seconds after the first
chunk, then Stop, and reports (printed, and as JSON to --out):

    fps_received       frames received per second, first chunk to last (decoded here, as a page would)
    first_frame_latency_ms  per chunk: server stamp (chunk decoded there, epoch ms) -> its first image received and
                       decoded here (PIL): when the page draws it (the page plays the rest at the video's fps);
                       p50 / p90 / max. Same machine: the clocks agree
    chunk_latency_ms   the same to all of a chunk's images received and decoded here, one after the other
    first_chunk_s      Start sent -> first chunk received
    switch_latency_s   switch sent -> first chunk of the new prompt received and decoded; the chunk it took
                       effect at, and the chunks in between (the switch waits for the chunk being made)
    compute_s          the server's per-chunk compute (denoise + decode), p50 / max
    video_fps          the stream's own frame rate (hello); fps_received below it means slower than real time

With the server's pace=true (its default) the frame rate is the video's, by design; pace=false shows what the
device can do.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from pathlib import Path

import aiohttp
from PIL import Image

RED = "a red circle moving fast to the right on a striped background"
YELLOW = "a yellow square moving slowly upwards on a dotted background"


def quantiles(values: list[float]) -> dict:
    if not values:
        return {}
    s = sorted(values)
    return {"p50": round(statistics.median(s), 2), "p90": round(s[int(0.9 * (len(s) - 1))], 2), "max": round(s[-1], 2)}


async def measure(url: str, prompt: str, switch_prompt: str, seconds: float, switch_at: float | None,
                  token: str | None) -> dict:  # fmt: skip
    params = {"token": token} if token else {}
    latencies, firsts, compute, switch = [], [], [], {}
    frames, first_chunk, last_chunk, first_s = 0, None, None, None
    async with aiohttp.ClientSession() as session, session.ws_connect(url.rstrip("/") + "/ws", params=params,
                                                                      max_msg_size=0) as ws:  # fmt: skip
        hello = await ws.receive_json(timeout=30)
        await ws.send_json({"type": "start", "prompt": prompt})
        sent = time.monotonic()
        header, images = None, []
        while True:
            now = time.monotonic()
            if first_chunk is not None and now - first_chunk >= seconds:
                break
            if switch_at is not None and first_chunk is not None and not switch and now - first_chunk >= switch_at:
                await ws.send_json({"type": "switch", "prompt": switch_prompt})
                switch["sent"] = now
            msg = await ws.receive(timeout=120)
            if msg.type == aiohttp.WSMsgType.BINARY:
                images.append(msg.data)
                if len(images) == 1:  # the page draws a chunk's first frame once it has it decoded
                    Image.open(io.BytesIO(msg.data)).load()
                    firsts.append(time.time() * 1000 - header["stamp_ms"])
                if len(images) < header["frames"]:
                    continue
                for data in images[1:]:  # decoded, as the page must before it can draw
                    Image.open(io.BytesIO(data)).load()
                arrived = time.monotonic()
                latencies.append(time.time() * 1000 - header["stamp_ms"])
                compute.append(header["compute_s"])
                frames += len(images)
                first_chunk = first_chunk or arrived
                last_chunk = arrived
                if header["prompt_index"] == 1 and "sent" in switch and "latency_s" not in switch:
                    switch["latency_s"] = round(arrived - switch["sent"], 3)
                    switch["chunk"] = header["index"]
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"the socket ended: {msg}")
            data = json.loads(msg.data)
            if data["type"] == "chunk":
                header, images = data, []
                if first_chunk is None:
                    first_s = time.monotonic() - sent
            elif data["type"] == "switched":
                switch["applied_at_chunk"] = data["chunk"]
            elif data["type"] in ("error", "refused"):
                raise RuntimeError(data["message"])
            elif data["type"] == "ended":
                break
            elif data["type"] == "queued":
                print(f"waiting: position {data['position']} in the server's queue")
        await ws.send_json({"type": "stop"})
    span = (last_chunk - first_chunk) if first_chunk and last_chunk and last_chunk > first_chunk else None
    return {
        "url": url,
        "model": hello["model"],
        "size": [hello["height"], hello["width"]],
        "video_fps": hello["fps"],
        "frames": frames,
        "chunks": len(latencies),
        "fps_received": round(frames / span, 2) if span else None,
        "first_chunk_s": round(first_s, 3) if first_s is not None else None,
        "first_frame_latency_ms": quantiles(firsts),
        "chunk_latency_ms": quantiles(latencies),
        "compute_s": quantiles(compute),
        "switch": {k: v for k, v in switch.items() if k != "sent"} or None,
        "latencies_ms": [round(x, 2) for x in latencies],
        "first_frame_latencies_ms": [round(x, 2) for x in firsts],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    parser.add_argument("--prompt", default=RED, help="the first prompt (the toy default; give a real one for Wan)")
    parser.add_argument("--switch-prompt", default=YELLOW)
    parser.add_argument("--seconds", type=float, default=30, help="seconds to receive, from the first chunk")
    parser.add_argument("--switch-at", type=float, default=15, help="seconds after the first chunk; <0: no switch")
    parser.add_argument("--token", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    switch_at = args.switch_at if args.switch_at >= 0 else None
    report = asyncio.run(measure(args.url, args.prompt, args.switch_prompt, args.seconds, switch_at, args.token))
    lat, first, sw = report["chunk_latency_ms"], report["first_frame_latency_ms"], report["switch"] or {}
    print(f"{report['model']} {report['size'][0]}x{report['size'][1]}: {report['fps_received']} frames/s received "
          f"(video {report['video_fps']} fps), first chunk after {report['first_chunk_s']} s, decode -> first frame "
          f"p50 {first.get('p50')} / p90 {first.get('p90')} / max {first.get('max')} ms, -> whole chunk p50 "
          f"{lat.get('p50')} / p90 {lat.get('p90')} / max {lat.get('max')} ms, switch latency "
          f"{sw.get('latency_s')} s (at chunk {sw.get('chunk')})")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
