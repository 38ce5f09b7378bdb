"""python -m rf.serve [model=... ckpt=...] [port=8000]: a live page that streams and takes prompts mid-stream.

    make serve                              the shipped toy student on the CPU, http://127.0.0.1:8000/
    make serve model=wan_1_3b ckpt=PATH ARGS='fast=exact'    the full model on a GPU

The stream is built as `make generate` builds it (rf.stream.Streamer.from_config); the web server is
rf.serve.app. Listening on anything but localhost needs allow_remote=true and an access token (token=, at
least 16 characters), which every request must then carry. Ctrl-C stops every stream at its chunk boundary,
closes the pages and removes the temporary folders.
"""

from __future__ import annotations

import asyncio
import functools
import signal

import torch
from aiohttp import web
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rf.diffusion.schedule import chunks_for_seconds
from rf.fast.fast_path import FastPath
from rf.models.cache import POLICIES, CacheConfig
from rf.serve.app import Options, Server
from rf.serve.live import FORMATS, sweep_stale
from rf.serve.protocol import Limits
from rf.stream import Streamer, text_encoder_config
from rf.toy.shipped import is_shipped, use_shipped
from rf.toy.text import check_toy_prompts, is_toy_encoder
from rf.utils.cli import entry
from rf.utils.instantiate import to_dict

LOCAL = ("127.0.0.1", "localhost", "::1")
# overrides of the server's command line that `make generate` needs to make the same stream (model, weights, ...)
GENERATE_KEYS = ("model", "ckpt", "use_ema", "sampler", "fast", "paths", "dtype", "strict_prompts", "experiment")
log = functools.partial(print, flush=True)


def check_address(host: str, allow_remote: bool, token: str | None) -> None:
    """Localhost by default; another address needs both allow_remote=true and an access token."""
    if host in LOCAL:
        return
    if not allow_remote:
        raise ValueError(f"host={host} listens beyond this machine: add allow_remote=true and token=<16+ characters> "
                         "(every request must then carry it), or keep host=127.0.0.1")  # fmt: skip
    if token is None or len(str(token)) < 16:
        raise ValueError(f"host={host} with allow_remote=true needs token= of at least 16 characters (every "
                         "request must carry it as ?token=), e.g. from python -c 'import secrets; "
                         "print(secrets.token_urlsafe())'")  # fmt: skip


def check_settings(cfg: DictConfig) -> None:
    checks = [
        ("port", 0 <= cfg.port <= 65535, "a port in [0, 65535] (0: any free one)"),
        ("max_seconds", cfg.max_seconds > 0, "a positive stream length"),
        ("idle_seconds", cfg.idle_seconds > 0, "a positive time"),
        ("queue_size", cfg.queue_size >= 0, "0 or more waiting visitors"),
        ("max_prompt_chars", cfg.max_prompt_chars >= 1, "at least 1"),
        ("max_switches_per_second", cfg.max_switches_per_second > 0, "a positive rate"),
        ("frame_format", cfg.frame_format in FORMATS, " or ".join(FORMATS)),
        ("jpeg_quality", 1 <= cfg.jpeg_quality <= 95, "a quality in [1, 95]"),
    ]
    for key, ok, fix in checks:
        if not ok:
            raise ValueError(f"{key}={cfg[key]}: use {fix}")


def generate_overrides(cfg: DictConfig, overrides: list[str]) -> tuple[str, ...]:
    """model= and ckpt= of this server, and its other command-line overrides that `make generate` shares."""
    given = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] in GENERATE_KEYS]
    base = [f"model={cfg.model.name}"] + ([f"ckpt={cfg.ckpt}"] if cfg.ckpt else [])
    return tuple(base + [o for o in given if not o.startswith(("model=", "ckpt="))])


def warmup_chunks(value, fast: FastPath, cache: CacheConfig) -> int:
    """warmup_chunks=auto: when the fast path compiles (FastPath.compiles), enough chunks to fill the window, run steady
    and switch (rf.serve.app.Server._warm_up); 0 on the plain path, which has nothing to compile."""
    if value == "auto":
        return cache.fill_chunks + 3 if fast.compiles else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"warmup_chunks={value}: use auto, 0 (none) or a number of chunks")
    return value


async def serve(server: Server, host: str, port: int, token: str | None) -> None:
    runner = web.AppRunner(server.app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:  # in use, or an address this machine does not have
        await runner.cleanup()
        raise ValueError(f"cannot listen on {host}:{port} ({err.strerror}): choose another port= (0: any free one) "
                         "or host=") from None  # fmt: skip
    port = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {server.options.model} on http://{shown}:{port}/" + (f"?token={token}" if token else "")
        + " (Ctrl-C stops)")  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # the server's on_shutdown: streams stopped, pages closed, temp folders removed
    log(f"stopped: {server.streams} stream(s) served, temporary files removed")


def build_server(cfg: DictConfig, overrides: list[str], streamer: Streamer | None = None) -> Server:
    """The server of a serve config: `overrides` are its command line's (for the reproducing command); a given
    `streamer` is used as it is (tests build one for several servers)."""
    token = None if cfg.token is None else str(cfg.token)
    check_address(cfg.host, cfg.allow_remote, token)
    check_settings(cfg)

    def check(prompt: str) -> None:  # the toy text encoder knows only the toy grammar's words
        check_toy_prompts([prompt], cfg.strict_prompts, "prompt")

    check = check if is_toy_encoder(text_encoder_config(cfg)) else None
    if check is not None:
        check(cfg.prompt)
    for folder in sweep_stale():
        log(f"removed {folder}: left by a server that was killed")
    if streamer is None:
        ckpt = use_shipped(cfg) if is_shipped(cfg.ckpt) else cfg.ckpt
        streamer = Streamer.from_config(cfg, ckpt=ckpt)
        size = f"{streamer.height}x{streamer.width} at {streamer.fps} fps"
        log(f"weights: {cfg.ckpt or 'random'} ({streamer.weights}), {size} on {streamer.device}")
    cache = CacheConfig(**to_dict(cfg.sink))
    chunks = chunks_for_seconds(cfg.max_seconds, streamer.fps, streamer.autoencoder.temporal_factor, cache.chunk_frames)
    limits = Limits(POLICIES, cache.policy, cache.alpha, bool(cfg.recache_on_switch), int(cfg.seed),
                    int(cfg.max_prompt_chars), check)  # fmt: skip
    options = Options(
        cache=cache, limits=limits, max_chunks=chunks, max_seconds=float(cfg.max_seconds),
        idle_seconds=float(cfg.idle_seconds), queue_size=int(cfg.queue_size),
        max_switches_per_second=float(cfg.max_switches_per_second), pace=bool(cfg.pace),
        frame_format=cfg.frame_format, jpeg_quality=int(cfg.jpeg_quality), token=token,
        generate_overrides=generate_overrides(cfg, overrides), model=cfg.model.name, prompt=cfg.prompt,
        warmup_chunks=warmup_chunks(cfg.warmup_chunks, streamer.fast, cache),
    )  # fmt: skip
    return Server(streamer, options, log=log)


@entry("serve", outputs=())
def main(cfg: DictConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    server = build_server(cfg, list(HydraConfig.get().overrides.task))
    asyncio.run(serve(server, cfg.host, int(cfg.port), server.options.token))


if __name__ == "__main__":
    main()
