"""rf.serve end to end in one process (aiohttp's test server and client), the shipped toy student on the CPU.

A stream starts, its frames arrive, a typed prompt switches it at the next chunk, the mp4 and the schedule download,
and `make generate` with that schedule makes the very same frames. Visitors queue and hear their position, a full
queue is refused, a closed page frees the slot at once, an idle stream ends, bad input is answered and never crashes
the server, a remote bind needs a token, the token is enforced, and no request names a file on the server.
"""

import asyncio
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
import yaml
from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer
from hydra import compose, initialize_config_dir
from PIL import Image

from rf.serve.__main__ import build_server
from rf.serve.live import RECORD_BACKLOG
from rf.stream import Streamer
from rf.toy.shipped import use_shipped
from rf.utils.cli import CONF_DIR
from rf.utils.video import probe, read_video
from tests.cli import run_rf

RED = "a red circle moving fast to the right on a striped background"
YELLOW = "a yellow square moving slowly upwards on a dotted background"
FAST = ["pace=false", "max_seconds=6"]  # 16 chunks of 3 frames, as fast as the CPU makes them


def compose_serve(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("serve", overrides=list(overrides))


@pytest.fixture(scope="module")
def streamer() -> Streamer:
    cfg = compose_serve()
    return Streamer.from_config(cfg, ckpt=use_shipped(cfg))


def serving(streamer, *overrides: str) -> TestClient:
    return TestClient(TestServer(build_server(compose_serve(*overrides), list(overrides), streamer).app))


async def next_json(ws, timeout: float = 30) -> dict:
    """The next JSON message (binary frames skipped)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type == WSMsgType.TEXT:
            return json.loads(msg.data)
        if msg.type != WSMsgType.BINARY:
            raise AssertionError(f"socket ended: {msg}")


async def until(ws, kind: str, timeout: float = 30) -> dict:
    while (m := await next_json(ws, timeout))["type"] != kind:
        pass
    return m


async def chunk_with_frames(ws) -> tuple[dict, list[bytes]]:
    header = await until(ws, "chunk")
    frames = [(await ws.receive(timeout=10)).data for _ in range(header["frames"])]
    return header, frames


@pytest.mark.parametrize(
    "policy, alpha, recache", [("ema_sink", 0.99, False), ("ema_sink", 0.9, True), ("window", 0.99, False)]
)
def test_stream_switch_download_and_generate_makes_the_same_frames(streamer, tmp_path, policy, alpha, recache):
    """The served frames (PNG: lossless) equal rf.generate's frames_out= for the downloaded schedule, exactly: the
    same ops in the same order on the same machine (the suite's thread count in both, the same seed, the same
    noise draws chunk by chunk), rounded to uint8 by the same expression, so not one pixel may differ. The page's
    cache policy, sink.alpha and re-caching reach the stream and its schedule."""

    async def go():
        async with serving(streamer, *FAST, "frame_format=png") as client:
            ws = await client.ws_connect("/ws")
            hello = await next_json(ws)
            assert (hello["fps"], hello["height"], hello["chunk_frames"]) == (8, 32, 3)
            start = {"type": "start", "prompt": RED, "seed": 3, "policy": policy, "alpha": alpha, "recache": recache}
            await ws.send_json(start)
            links = await until(ws, "started")
            served = []  # [(header, frames)]
            while len(served) < 10:
                header, frames = await chunk_with_frames(ws)
                served.append((header, frames))
                if header["index"] == 2:
                    await ws.send_json({"type": "switch", "prompt": YELLOW})
                if header["index"] == 5:  # mid-stream: the mp4 so far decodes
                    mid = await (await client.get(links["mp4"])).read()
            await ws.send_json({"type": "stop"})
            ended = await until(ws, "ended")
            mp4 = await (await client.get(links["mp4"])).read()
            schedule = yaml.safe_load(await (await client.get(links["yaml"])).text())
            await ws.close()
            return served, ended, mid, mp4, schedule

    served, ended, mid, mp4, schedule = asyncio.run(go())
    assert [h["index"] for h, _ in served] == list(range(10)) and all(h["frames"] == 3 for h, _ in served)
    switch_chunk = next(h["index"] for h, _ in served if h["prompt_index"] == 1)
    assert 3 <= switch_chunk <= 4  # sent after chunk 2 arrived: the worker applies it at the next boundary
    assert all(h["prompt_index"] == (h["index"] >= switch_chunk) for h, _ in served)
    assert ended["reason"] == "stopped" and ended["chunks"] >= 10

    (tmp_path / "mid.mp4").write_bytes(mid)
    # chunk 5 is sent after chunk 4's write was queued with at most RECORD_BACKLOG writes pending: chunks 0-2 at
    # least are in the mp4 (more, unless the recorder thread is starved, as on a loaded 2-core CI machine), and it
    # decodes to every frame written but the newest
    written = 5 - RECORD_BACKLOG
    assert written * 3 - 1 <= probe(tmp_path / "mid.mp4")["frames"] <= 10 * 3
    (tmp_path / "served.mp4").write_bytes(mp4)
    video, fps = read_video(tmp_path / "served.mp4")
    assert video.shape[1] == ended["chunks"] * 3 and fps == 8

    switch_at = switch_chunk * 3 / 8  # chunk k starts at frame 3 k of an 8-fps toy video
    assert schedule["schedule"] == [{"at": 0.0, "prompt": RED}, {"at": switch_at, "prompt": YELLOW}]
    assert schedule["seconds"] == ended["chunks"] * 3 / 8 and schedule["seed"] == 3
    assert schedule["sink"]["policy"] == policy and schedule["sink"]["alpha"] == alpha
    assert schedule["recache_on_switch"] is recache

    # make generate with the downloaded command line
    args = shlex.split(schedule["command"])
    assert args[:3] == ["python", "-m", "rf.generate"]
    frames_out = tmp_path / "frames.pt"
    overrides = [a for a in args[3:] if not a.startswith("out=")] + [f"out={tmp_path / 'gen.mp4'}",
                                                                      f"frames_out={frames_out}"]  # fmt: skip
    r = run_rf("generate", *overrides, runs=tmp_path)  # the suite's thread count, as this process
    assert r.returncode == 0, r.stderr
    generated = torch.load(frames_out)  # uint8 [3, T, H, W]
    received = np.concatenate([np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in fs]) for _, fs in served])
    assert generated.shape[1] == ended["chunks"] * 3
    assert torch.equal(generated[:, : received.shape[0]], torch.from_numpy(received).permute(3, 0, 1, 2))


def test_queue_positions_refusal_and_a_closed_page_frees_the_slot(streamer):
    async def go():
        async with serving(streamer, "pace=true", "max_seconds=60", "queue_size=2") as client:
            a, b, c, d = [await client.ws_connect("/ws") for _ in range(4)]
            for ws in (a, b, c, d):
                await next_json(ws)
                await ws.send_json({"type": "start", "prompt": RED})
            assert (await next_json(a))["type"] == "started"
            assert await next_json(b) == {"type": "queued", "position": 1}
            assert await next_json(c) == {"type": "queued", "position": 2}
            refused = await next_json(d)
            assert refused["type"] == "refused" and "queue is full (2 waiting" in refused["message"]
            assert (await d.receive(timeout=5)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
            await b.close()  # a waiting page leaves: the one behind it moves up
            assert await next_json(c) == {"type": "queued", "position": 1}
            await until(a, "chunk")
            await a.close()  # the streaming page leaves: the slot is c's at once
            assert (await next_json(c, timeout=2))["type"] == "started"
            header = await until(c, "chunk")
            assert header["index"] == 0
            await c.send_json({"type": "stop"})
            assert (await until(c, "ended"))["reason"] == "stopped"

    asyncio.run(go())


def test_frames_are_not_deflated_when_the_page_asks(streamer):
    """A browser offers permessage-deflate; the server declines it (JPEG does not compress) and still streams."""

    async def go():
        async with serving(streamer, "pace=false") as client:
            ws = await client.ws_connect("/ws", compress=15)  # what Chromium's handshake offers
            assert ws.compress == 0  # the extension the server accepted: none
            await ws.send_json({"type": "start", "prompt": RED})
            header, frames = await chunk_with_frames(ws)
            assert header["index"] == 0 and frames and frames[0][:2] == b"\xff\xd8"  # a JPEG, as sent

    asyncio.run(go())


def test_stop_then_start_at_once_gives_a_fresh_stream(streamer):
    """The old stream's last chunk and its `ended` never reach the page after the new stream's `started`."""

    async def go():
        async with serving(streamer, "pace=true") as client:
            ws = await client.ws_connect("/ws")
            await ws.send_json({"type": "start", "prompt": RED})
            await until(ws, "chunk")
            await ws.send_json({"type": "stop"})
            await ws.send_json({"type": "start", "prompt": YELLOW})
            await until(ws, "started")
            after = [await next_json(ws) for _ in range(3)]
            assert [m["type"] for m in after] == ["chunk"] * 3, after
            assert [m["index"] for m in after] == [0, 1, 2]

    asyncio.run(go())


def test_an_idle_stream_ends(streamer):
    async def go():
        async with serving(streamer, "pace=true", "idle_seconds=0.5") as client:
            ws = await client.ws_connect("/ws")
            await ws.send_json({"type": "start", "prompt": RED})
            ended = await until(ws, "ended", timeout=20)
            assert ended["reason"].startswith("idle: no message for 0.5 s") and ended["chunks"] >= 1
            await ws.send_json({"type": "start", "prompt": RED})  # the page may start again
            assert (await until(ws, "started"))["type"] == "started"

    asyncio.run(go())


def test_bad_input_is_answered_and_never_crashes_the_server(streamer):
    bad = [
        ("{not json", "not valid JSON"),
        ('{"type": "fly"}', "type='fly' is not a message type"),
        ('{"type": "stop", "extra": 1}', "unknown field(s) extra"),
        (json.dumps({"type": "start", "prompt": "x" * 500}), "more than max_prompt_chars=400"),
        (json.dumps({"type": "start", "prompt": "a fox runs"}), "outside the toy grammar"),
        (json.dumps({"type": "start", "prompt": RED, "alpha": 2}), "alpha=2.0 is outside (0, 1]"),
        (json.dumps({"type": "switch", "prompt": RED}), "no stream of this page is running: press Start first"),
        ('{"type": "stop"}', "nothing to stop"),
    ]

    async def go():
        async with serving(streamer, "pace=true") as client:
            ws = await client.ws_connect("/ws")
            await next_json(ws)
            for text, needle in bad:
                await ws.send_str(text)
                reply = await next_json(ws)
                assert reply["type"] == "error" and needle in reply["message"], (text, reply)
            await ws.send_bytes(b"\x89PNG")
            assert "binary messages are not accepted" in (await next_json(ws))["message"]
            await ws.send_json({"type": "start", "prompt": RED})
            await until(ws, "chunk")
            replies = []
            for _ in range(5):  # a flood of switches: one is taken, the rest answered
                await ws.send_json({"type": "switch", "prompt": YELLOW})
            while len(replies) < 4:
                if (m := await next_json(ws))["type"] == "error":
                    replies.append(m["message"])
            assert all("still pending" in r or "max_switches_per_second" in r for r in replies)
            await ws.send_json({"type": "start", "prompt": RED})
            assert "already streams" in (await until(ws, "error"))["message"]
            big = await client.ws_connect("/ws")  # larger than any valid message: closed, the server goes on
            await big.send_str("x" * 100_000)
            while (await big.receive(timeout=5)).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                pass
            assert big.close_code == 1009
            await until(ws, "chunk")  # the stream goes on
            other = await client.ws_connect("/ws")
            assert (await next_json(other))["type"] == "hello"

    asyncio.run(go())


def test_no_request_names_a_file(streamer):
    async def go():
        async with serving(streamer) as client:
            for path in ["/download/../../etc/passwd", "/download/..%2F..%2Fetc%2Fpasswd", "/download/passwd",
                         "/download/AAAAAAAAAAAAAAAAAAAAAA.mp4", "/page/index.html", "/../conf/serve.yaml",
                         "/app.js/../../serve.yaml", "/static/../../pyproject.toml"]:  # fmt: skip
                r = await client.get(path)
                assert r.status == 404, path
                assert "root:" not in await r.text()
            assert (await client.get("/")).status == 200 and (await client.get("/app.js")).status == 200
            with pytest.raises(WSServerHandshakeError) as err:  # a page of another site in the user's browser
                await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
            assert err.value.status == 403
            own = str(client.make_url("")).rstrip("/")
            assert (await client.ws_connect("/ws", headers={"Origin": own})) is not None

    asyncio.run(go())


def test_the_token_is_enforced(streamer):
    token = "s3cret-token-of-20ch"

    async def go():
        async with serving(streamer, f"token={token}") as client:
            for path in ["/", "/app.js", "/ws", "/download/AAAAAAAAAAAAAAAAAAAAAA.mp4"]:
                assert (await client.get(path)).status == 403, path
                assert (await client.get(path, params={"token": "wrong-token-of-20chr"})).status == 403, path
            page = await client.get("/", params={"token": token})
            assert page.status == 200 and f'src="app.js?token={token}"' in await page.text()
            assert (await client.get("/app.js", params={"token": token})).status == 200
            ws = await client.ws_connect("/ws", params={"token": token})
            assert (await next_json(ws))["type"] == "hello"

    asyncio.run(go())


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["host=0.0.0.0"], "host=0.0.0.0 listens beyond this machine: add allow_remote=true and token="),
        (["host=0.0.0.0", "allow_remote=true"], "needs token= of at least 16 characters"),
        (["host=0.0.0.0", "allow_remote=true", "token=short"], "needs token= of at least 16 characters"),
        (["queue_size=-1"], "queue_size=-1"),
        (["prompt=a fox runs"], "outside the toy grammar"),
    ],
)
def test_bad_settings_give_one_line(tmp_path, overrides, needle):
    """Each refused before the model is built, in one line."""
    r = run_rf("serve", *overrides, runs=tmp_path, timeout=60)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


def test_a_restart_removes_what_a_killed_server_left(streamer, tmp_path, monkeypatch):
    """A server killed with SIGKILL leaves its streams' temporary folders; the next one removes them (and only those
    of servers no longer running)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"rf-serve-{dead.pid}-abc"
    (left / "x").mkdir(parents=True)
    alive = tmp_path / f"rf-serve-{os.getpid()}-abc"
    alive.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    build_server(compose_serve(), [], streamer)
    assert not left.exists() and alive.exists()


def test_a_port_in_use_gives_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_rf("serve", f"port={port}", runs=tmp_path, timeout=120)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "choose another port=" in lines[0]


def test_a_warm_up_stream_runs_before_the_first_visitors_stream(streamer, capsys):
    """warmup_chunks=N: at start-up a stream of N chunks with a re-cached switch runs on the worker thread, where the
    fast path would compile, then a second stream from a reset cache; a visitor who starts meanwhile gets its own
    stream, from chunk 0, after them."""

    async def go():
        async with serving(streamer, *FAST, "warmup_chunks=4") as client:
            ws = await client.ws_connect("/ws")
            await next_json(ws)
            await ws.send_json({"type": "start", "prompt": RED, "seed": 0, "policy": "ema_sink", "alpha": 0.99,
                                "recache": False})  # fmt: skip
            await until(ws, "started")
            header, frames = await chunk_with_frames(ws)
            log = capsys.readouterr().out  # what the server had printed when the visitor's first chunk came
            await ws.close()
            return header, frames, log

    header, frames, log = asyncio.run(go())
    assert "warming up: 4 chunks with a switch at chunk 2, then 4 chunks of a second stream" in log, log
    # every chunk made, the switch applied, then a second stream from a reset cache (9 // 3 + 1 chunks), no error
    assert "warm-up done in" in log and "(4 chunks, 2 prompts, then 4 chunks)" in log, log
    assert header["index"] == 0 and len(frames) == 3


def test_warmup_chunks_auto_warms_only_a_fast_path_that_compiles():
    from rf.fast.fast_path import FastPath
    from rf.models.cache import CacheConfig
    from rf.serve.__main__ import warmup_chunks
    from rf.utils.instantiate import to_dict

    def chunks(*overrides):
        cfg = compose_serve(*overrides)
        return warmup_chunks(cfg.warmup_chunks, FastPath(**to_dict(cfg.fast)), CacheConfig(**to_dict(cfg.sink)))

    assert chunks() == 0  # the plain path compiles nothing
    assert chunks("fast=exact") == 9 // 3 + 3  # the window filled (9 frames of 3-frame chunks), then 3 more
    assert chunks("fast.static_cache=true", "fast.compile_commit=true") == 9 // 3 + 3  # the commit compiles too
    assert chunks("warmup_chunks=2") == 2
    with pytest.raises(ValueError, match="warmup_chunks=-1: use auto, 0"):
        chunks("warmup_chunks=-1")


def test_stopping_the_server_stops_its_warm_up(streamer, capsys):
    """Ctrl-C during the warm-up: it ends at its next chunk boundary (the server's shutdown), not after all chunks."""

    async def go():
        async with serving(streamer, *FAST, "warmup_chunks=1000"):
            while "chunks with a switch" not in capsys.readouterr().out:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # a few chunks in

    asyncio.run(go())
    log = capsys.readouterr().out
    done = [line for line in log.splitlines() if "warm-up done" in line]
    assert len(done) == 1 and done[0].endswith("server stopped)"), log
    chunks = int(done[0].split("(")[1].split(" chunks")[0])
    assert 0 < chunks < 1000, done
