"""The web server (aiohttp): the page, the WebSocket each visitor streams through, and the downloads.

    GET /                       page/index.html        (every request needs ?token= when the server has one)
    GET /app.js                 page/app.js
    GET /ws                     the WebSocket: rf.serve.protocol's messages; the frames as binary messages
    GET /download/<name>.mp4    the stream so far, <name> a random token looked up in memory, never a path
    GET /download/<name>.yaml   the schedule that makes the same stream with `make generate`

Data flow of a chunk: worker thread (rf.serve.live: denoise, decode, encode images; its recorder thread writes
the mp4) -> on_event -> loop.call_soon_threadsafe -> the visitor's outbox (an asyncio.Queue) -> its sender task
-> the socket: a JSON header, then the images. One worker thread per device (a one-thread executor): streams
run one after another, the model is never shared by two at a time; rf.serve.slots decides whose turn it is.

The server keeps nothing that outlives a stream: each stream's mp4 lives in its own temporary folder, removed
when its visitor leaves or the server stops; a restart starts empty (and removes the folders of a server that was
killed before it could: rf.serve.live.sweep_stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import WSMsgType, web

from rf.models.cache import CacheConfig
from rf.serve.live import FORMATS, LiveStream
from rf.serve.protocol import Limits, ProtocolError, Start, Stop, Switch, SwitchLimiter, error, parse
from rf.serve.slots import Slots
from rf.stream import Streamer

PAGE = Path(__file__).parent / "page"
STATIC = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript")}  # fixed: no path from a request
DOWNLOAD = re.compile(r"([A-Za-z0-9_-]{16,64})\.(mp4|yaml)")


@dataclass(frozen=True)
class Options:
    """The server's settings (conf/serve.yaml)."""

    cache: CacheConfig  # the sink settings; the page picks policy and alpha per stream
    limits: Limits
    max_chunks: int  # max_seconds in whole chunks
    max_seconds: float
    idle_seconds: float
    queue_size: int
    max_switches_per_second: float
    pace: bool
    frame_format: str
    jpeg_quality: int
    token: str | None
    generate_overrides: tuple[str, ...]
    model: str
    prompt: str  # the page's first prompt
    warmup_chunks: int = 0  # a stream run at start-up, before any visitor's (0: none)


class Visitor:
    """One open page: its socket, its outbox, its stream (the latest), its switch limiter."""

    count = 0

    def __init__(self, ws: web.WebSocketResponse, switches_per_second: float):
        Visitor.count += 1
        self.id = Visitor.count
        self.ws = ws
        self.outbox: asyncio.Queue[tuple[dict, list[bytes]]] = asyncio.Queue()
        self.last_seen = time.monotonic()
        self.limiter = SwitchLimiter(switches_per_second)
        self.start: Start | None = None
        self.stream: LiveStream | None = None
        self.gone = False

    def send(self, message: dict, images: list[bytes] | None = None) -> None:
        self.outbox.put_nowait((message, images or []))

    async def sender(self) -> None:
        """Send the outbox in order: a chunk's header and its images are never interleaved with anything."""
        while True:
            message, images = await self.outbox.get()
            await self.ws.send_str(json.dumps(message))
            for image in images:
                await self.ws.send_bytes(image)
            if message["type"] == "refused":
                await self.ws.close()
                return


class Server:
    def __init__(self, streamer: Streamer, options: Options, log: Callable[[str], None] = print):
        self.streamer, self.options, self.log = streamer, options, log
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rf-stream")  # one stream at a time
        self.slots: Slots[Visitor] = Slots(options.queue_size, self._begin, self._tell_position)
        self.downloads: dict[str, LiveStream] = {}
        self.visitors: set[Visitor] = set()
        self.streams = 0
        self.pages = {route: (PAGE / name).read_text() for route, (name, _) in STATIC.items()}
        if options.token is not None:  # the page's script needs the token too
            query = html.escape(urllib.parse.urlencode({"token": options.token}))
            self.pages["/"] = self.pages["/"].replace('src="app.js"', f'src="app.js?{query}"')
        self.app = web.Application(middlewares=[self._guard])
        for route, (_, content_type) in STATIC.items():
            self.app.router.add_get(route, self._static(route, content_type))
        self.app.router.add_get("/ws", self.websocket)
        self.app.router.add_get("/download/{name}", self.download)
        self.app.on_shutdown.append(self._shutdown)
        self.app.on_startup.append(self._warm_up)
        self.warming: LiveStream | None = None  # the warm-up stream, while it runs

    # -- HTTP ------------------------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler):
        token = self.options.token
        if token is not None and not hmac.compare_digest(request.query.get("token", ""), token):
            raise web.HTTPForbidden(text="this server needs its access token: open the address it printed "
                                    "(…/?token=...)")  # fmt: skip
        return await handler(request)

    def _static(self, route: str, content_type: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=self.pages[route], content_type=content_type,
                                headers={"Cache-Control": "no-store"})  # fmt: skip

        return handler

    async def download(self, request: web.Request) -> web.Response:
        match = DOWNLOAD.fullmatch(request.match_info["name"])
        live = self.downloads.get(match[1]) if match else None
        if live is None:
            raise web.HTTPNotFound(text="no such stream: a download lives as long as the page that streamed it")
        if match[2] == "yaml":
            body = yaml.safe_dump(live.schedule(), sort_keys=False, allow_unicode=True, width=1 << 16)
            kind = "text/yaml"
        else:
            body, kind = await asyncio.get_running_loop().run_in_executor(None, live.mp4_bytes), "video/mp4"
            if body is None:
                raise web.HTTPNotFound(text="nothing streamed yet: wait for the first chunk")
        headers = {"Content-Disposition": f'attachment; filename="rf-stream.{match[2]}"', "Cache-Control": "no-store"}
        return web.Response(body=body, content_type=kind, headers=headers)

    # -- the WebSocket ---------------------------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin and urllib.parse.urlsplit(origin).netloc != request.host:  # another site's page in the user's browser
            raise web.HTTPForbidden(text=f"origin {origin} is not this server's page: open http://{request.host}/")
        # a message this large cannot be valid (aiohttp closes the socket with 1009); smaller ones are answered
        # heartbeat: a page that vanished without closing (a dropped network) is found within a minute
        # compress=False: a browser asks for permessage-deflate, which would deflate every JPEG (0.998 of its size)
        # at about 7 ms of server CPU a 832x480 frame; the other messages are a few hundred bytes of JSON
        ws = web.WebSocketResponse(
            max_msg_size=8 * self.options.limits.max_prompt_chars + 4096, heartbeat=30, compress=False
        )
        await ws.prepare(request)
        visitor = Visitor(ws, self.options.max_switches_per_second)
        self.visitors.add(visitor)
        sender = asyncio.create_task(visitor.sender())
        visitor.send(self._hello())
        try:
            async for msg in ws:
                visitor.last_seen = time.monotonic()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._handle(visitor, msg.data)
        finally:
            self._leave(visitor)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
        return ws

    def _hello(self) -> dict:
        o, s, lim = self.options, self.streamer, self.options.limits
        return {"type": "hello", "fps": s.fps, "height": s.height, "width": s.width,
                "chunk_frames": o.cache.chunk_frames, "policies": list(lim.policies),
                "defaults": {"prompt": o.prompt, "policy": lim.default_policy,
                             "alpha": lim.default_alpha, "recache": lim.default_recache, "seed": lim.default_seed},
                "max_prompt_chars": lim.max_prompt_chars, "max_seconds": o.max_seconds, "model": o.model,
                "image_type": FORMATS[o.frame_format]}  # fmt: skip

    def _handle(self, visitor: Visitor, data: str | bytes) -> None:
        try:
            message = parse(data, self.options.limits)
            if isinstance(message, Start):
                if visitor is self.slots.running or self.slots.position(visitor) is not None:
                    raise ProtocolError("this page already streams or waits: press Stop first")
                visitor.start = message
                if self.slots.request(visitor) == "refused":
                    visitor.send({"type": "refused", "message": f"the queue is full ({self.options.queue_size} "
                                  "waiting for one stream at a time): try again later"})  # fmt: skip
            elif isinstance(message, Switch):
                live = visitor.stream
                if visitor is not self.slots.running or live is None or live.stopped.is_set():
                    raise ProtocolError("no stream of this page is running: press Start first")
                visitor.limiter.check(message.prompt)
                live.switch(message.prompt)
            elif isinstance(message, Stop):
                if visitor is self.slots.running:
                    visitor.stream.stop("stopped")
                    self.slots.finished(visitor)  # the slot is free now; the worker ends at its chunk boundary
                elif self.slots.position(visitor) is not None:
                    self.slots.leave(visitor)
                    visitor.send({"type": "ended", "reason": "left the queue", "chunks": 0, "seconds": 0.0})
                else:
                    raise ProtocolError("nothing to stop: no stream of this page is running or waiting")
        except ProtocolError as err:
            visitor.send(error(str(err)))

    def _tell_position(self, visitor: Visitor, position: int) -> None:
        visitor.send({"type": "queued", "position": position})

    def _begin(self, visitor: Visitor) -> None:
        """The slot is this visitor's: its stream's worker runs after the previous one's (one-thread executor)."""
        o, start = self.options, visitor.start
        if visitor.stream is not None and visitor.stream.finished:  # a page keeps the downloads of its latest stream
            self._discard(visitor.stream)
        cache = CacheConfig(**{**vars(o.cache), "policy": start.policy, "alpha": start.alpha})
        loop = asyncio.get_running_loop()
        visitor.limiter = SwitchLimiter(o.max_switches_per_second)
        live = LiveStream(
            self.streamer, start, cache=cache, chunks=o.max_chunks, idle_seconds=o.idle_seconds, pace=o.pace,
            on_event=lambda m, images: loop.call_soon_threadsafe(self._deliver, visitor, live, m, images),
            last_seen=lambda: visitor.last_seen, frame_format=o.frame_format, quality=o.jpeg_quality,
            generate_overrides=o.generate_overrides,
        )  # fmt: skip
        visitor.stream, self.downloads[live.token] = live, live
        self.streams += 1
        live.number = self.streams
        self.log(f"stream {live.number} started for page {visitor.id}: {start.policy} alpha={start.alpha:g} "
                 f"recache={str(start.recache).lower()} seed={start.seed} prompt {start.prompt!r}")  # fmt: skip
        visitor.send({"type": "started", "mp4": f"/download/{live.token}.mp4", "yaml": f"/download/{live.token}.yaml"})
        loop.run_in_executor(self.executor, live.run).add_done_callback(lambda _: self._done(visitor, live))

    def _deliver(self, visitor: Visitor, live: LiveStream, message: dict, images: list[bytes]) -> None:
        """A worker's event, on the loop: to the visitor's outbox (if the page is still there)."""
        if message["type"] == "ended":
            self.log(f"stream {live.number} ended ({message['reason']}): {message['chunks']} chunks, "
                     f"{message['seconds']:.1f} s, {len(live.switches)} prompt(s)")  # fmt: skip
        if visitor.gone or visitor.stream is not live:  # the tail of a stream the page already replaced
            return
        if message["type"] == "switched":
            visitor.limiter.applied()
        visitor.send(message, images)

    def _done(self, visitor: Visitor, live: LiveStream) -> None:
        """The worker returned: free the slot if the stream ended by itself; drop its files if the page left."""
        if visitor.stream is live:
            self.slots.finished(visitor)
        if visitor.gone or visitor.stream is not live:
            self._discard(live)

    def _discard(self, live: LiveStream) -> None:
        self.downloads.pop(live.token, None)
        live.close()

    def _leave(self, visitor: Visitor) -> None:
        visitor.gone = True
        self.visitors.discard(visitor)
        live = visitor.stream
        if live is not None and not live.finished:
            live.stop("left")  # the worker ends at the chunk boundary; _done removes the files
        elif live is not None:
            self._discard(live)
        self.slots.leave(visitor)

    async def _warm_up(self, app: web.Application) -> None:
        """Queue two streams on the worker thread before any visitor's: the fast path compiles its shapes (and captures
        its CUDA graphs) there, not in the first visitor's stream (a minute on an H100, experiments/serve). The
        first fills the window, runs steady chunks, and switches the prompt with re-caching, the shapes a visitor's
        stream meets. The second starts from a reset cache, as every visitor's does, until its first steady chunk:
        the fill stages' CUDA graphs are captured at their second call (and under torch 2.11 the decoder's first
        chunk after a reset compiled again, before its upsampling blocks took rf.models.vae_forms.upsample3d_forward). A
        visitor who starts meanwhile gets the usual `started` and its frames after the warm-up, which runs first on the
        one worker thread."""
        n = self.options.warmup_chunks
        if n <= 0:
            return
        o, loop, started = self.options, asyncio.get_running_loop(), time.perf_counter()
        switch_at = max(1, n - 2)  # a switch after the window has filled, then chunks under the new prompt
        refill = o.cache.fill_chunks + 1  # a reset cache's fill stages, then a steady chunk

        def stream(chunks: int, on_event) -> LiveStream:
            start = Start(o.prompt, o.cache.policy, o.cache.alpha, recache=True, seed=0)
            return LiveStream(self.streamer, start, cache=o.cache, chunks=chunks, on_event=on_event,
                              last_seen=time.monotonic, idle_seconds=float("inf"), pace=False,
                              frame_format=o.frame_format, quality=o.jpeg_quality)  # fmt: skip

        def on_event(message: dict, images: list[bytes]) -> None:  # the worker thread
            if message["type"] == "chunk" and message["index"] == switch_at - 1:
                first.switch(o.prompt)  # the same words: the switch and re-cache passes are what matter

        first, streams = stream(n, on_event), []
        self.log(f"warming up: {n} chunks with a switch at chunk {switch_at}, then {refill} chunks of a second "
                 "stream, before the first visitor's stream")  # fmt: skip

        def run() -> None:  # the worker thread: the second stream only after a first that was not stopped
            first.run()
            if first.reason is None:
                streams.append(stream(refill, lambda message, images: None))
                self.warming = streams[0]
                streams[0].run()

        def done(_) -> None:
            self.warming = None
            for live in (first, *streams):
                live.close()
            reason = first.reason or (streams[0].reason if streams else None)
            self.log(
                f"warm-up done in {time.perf_counter() - started:.1f} s ({first.chunks_done} chunks, "
                f"{len(first.switches)} prompts, then {sum(s.chunks_done for s in streams)} chunks"
                + (f", {reason}" if reason else "") + ")"
            )  # fmt: skip

        self.warming = first
        loop.run_in_executor(self.executor, run).add_done_callback(done)

    async def _shutdown(self, app: web.Application) -> None:
        """Ctrl-C: every stream stops at its chunk boundary, every socket closes, every temp folder goes."""
        if self.warming is not None:  # the warm-up too (it ends at its chunk boundary)
            self.warming.stop("server stopped")
        for visitor in list(self.visitors):
            if visitor.stream is not None:
                visitor.stream.stop("server stopped")
            await visitor.ws.close(message=b"server stopped")
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)
        for live in list(self.downloads.values()):
            self._discard(live)
