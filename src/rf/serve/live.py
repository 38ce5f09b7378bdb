"""One live stream: the Streamer's chunk loop in a worker thread, a prompt list that grows while it streams, the
mp4 written as it goes, and the switch times kept so `make generate` can make the same stream again.

    worker thread (run)                                   event loop (rf.serve.app)
      for chunk in sampler.stream(prompts, ...):            switch(prompt) -> self.pending (a thread-safe queue)
          frames = decoder.decode(chunk)  [1, 3, t, H, W]   stop(reason)   -> self.stopped (an Event)
          on_event(chunk header, t encoded images)  -> loop.call_soon_threadsafe in the caller's callback
                  (the t images encoded by ENCODE_THREADS threads at once)
          recorder: writer.write(frames)  the mp4, in its own thread, under a lock (a download copies it
                                          between writes), while the next chunk is generated
          stop? idle? -> end at this chunk boundary
          a pending switch -> prompts.append((next chunk, embeddings))   StreamSampler reads it at that chunk
          pace: wait until the video made so far has played in real time (pace=true)

Only the worker thread touches `prompts` and the model; the loop hands it switches through `pending`, so the
list grows only between two chunks, by an entry starting at the next chunk (the sampler's documented contract).
The cache policy, sink.alpha, re-caching and the seed are chosen per stream at start; re-caching is one choice
for every switch of the stream, as `recache_on_switch` is for `make generate`.

Download of the mp4 while the stream runs: a copy of NAME.partial.mp4 taken between two writes, a fragmented
mp4 that decodes to every frame but the newest (rf.utils.video: the muxer closes a fragment when the next frame
comes); once the stream ends the file is finalised and the download is whole.

Why the mp4 has its own thread: H.264-encoding a chunk costs about 0.25 s of CPU at 832x480 (12 frames), as
much as half the GPU's work for it. Written before sending, it delayed every chunk's frames by that much (256 ms
from decode to the viewer on an H100, experiments/serve) and made the stream serial: 18 frames/s where the
generator makes 29. Now the frames go to the page first, and the recorder writes while the next chunk is made,
at most RECORD_BACKLOG chunks behind. The frames themselves are JPEG-encoded by a few threads at once (Pillow
releases the GIL while it encodes): one after the other, 12 frames at 832x480 took most of the 100 ms a chunk
may take from decode to the page.
"""

from __future__ import annotations

import functools
import io
import os
import queue
import secrets
import shlex
import shutil
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from rf.diffusion.sampler import GeneratorNoise
from rf.models.cache import CacheConfig
from rf.serve.protocol import Start
from rf.stream import Streamer, with_cache
from rf.utils.video import StreamingVideoWriter

FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}  # png: lossless (the reproducibility test compares pixels)
PREFIX = "rf-serve-"  # each stream's temporary folder: rf-serve-<server pid>-<random>
RECORD_BACKLOG = 2  # chunks the mp4 recorder may lag behind the stream before the generator waits for it
ENCODE_THREADS = 4  # a chunk's frames are JPEG-encoded this many at a time


def sweep_stale(root: str | Path | None = None) -> list[Path]:
    """Remove the stream folders a killed server left behind (its pid no longer runs): a restart starts clean."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not folder.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that server still runs
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except PermissionError:  # another user's server
            continue
    return removed


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """[1, 3, t, H, W] in [-1, 1] -> [t, H, W, 3] uint8, rounded as rf.generate's frames_out= is."""
    return ((frames[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu()


def encode_image(pixels: torch.Tensor, fmt: str, quality: int) -> bytes:
    """[H, W, 3] uint8 -> JPEG or PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(out, format=fmt.upper(), **({"quality": quality} if fmt == "jpeg" else {}))
    return out.getvalue()


def hydra_string(text: str) -> str:
    """A prompt as a quoted Hydra override value."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LiveStream:
    """One visitor's stream. `run()` is the worker thread's body; everything else may be called from the loop."""

    def __init__(
        self,
        streamer: Streamer,
        start: Start,
        *,
        cache: CacheConfig,  # the server's sink settings with the page's policy and alpha
        chunks: int,  # the cap: max_seconds in whole chunks
        on_event: Callable[[dict, list[bytes]], None],  # called in the worker thread: a message and its images
        last_seen: Callable[[], float],  # time.monotonic() of the visitor's last message
        idle_seconds: float,
        pace: bool,
        frame_format: str = "jpeg",
        quality: int = 90,
        generate_overrides: tuple[str, ...] = (),  # model / ckpt / sampler overrides for the reproducing command
        threads: int | None = None,
    ):
        if frame_format not in FORMATS:
            raise ValueError(f"frame_format={frame_format!r}: choose one of {', '.join(FORMATS)}")
        self.streamer = with_cache(streamer, cache)
        self.start, self.cache, self.max_chunks = start, cache, chunks
        self.on_event, self.last_seen, self.idle_seconds, self.pace = on_event, last_seen, idle_seconds, pace
        self.frame_format, self.quality, self.overrides = frame_format, quality, tuple(generate_overrides)
        self.threads = threads or torch.get_num_threads()  # the worker thread uses the caller's thread count
        self.token = secrets.token_urlsafe(16)  # the download name: looked up, never a path from a request
        self.folder = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")
        self.writer = StreamingVideoWriter(Path(self.folder.name) / "stream.mp4", streamer.fps,
                                           streamer.height, streamer.width)  # fmt: skip
        self.lock = threading.Lock()  # the writer: a write and a download copy never interleave
        self.recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rf-serve-mp4")  # writes in order
        self.encoder = ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="rf-serve-jpeg")
        self.recording: deque[Future] = deque()  # writes submitted and not yet checked
        self.pending: queue.SimpleQueue[str] = queue.SimpleQueue()  # switches from the loop, applied by the worker
        self.stopped = threading.Event()
        self.reason: str | None = None
        self.switches: list[tuple[int, str]] = [(0, start.prompt)]  # (first chunk, prompt), as applied
        self.chunks_done = 0
        self.finished = False
        self.number = 0  # the server's count, for its log lines

    # -- called from the event loop -------------------------------------------------------------------------
    def switch(self, prompt: str) -> None:
        self.pending.put(prompt)

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stopped.set()

    def chunk_start(self, chunk: int) -> float:
        """Seconds into the stream where chunk `chunk` starts (rf.diffusion.schedule's convention)."""
        frames = self.streamer.autoencoder.num_frames(chunk * self.cache.chunk_frames) if chunk else 0
        return frames / self.streamer.fps

    def schedule(self) -> dict:
        """What `make generate` needs to make this stream again: the prompt schedule of the chunks streamed."""
        seconds = self.chunk_start(self.chunks_done)
        schedule = [{"at": self.chunk_start(c), "prompt": p} for c, p in self.switches if c < self.chunks_done]
        sink = {"policy": self.cache.policy, "alpha": self.cache.alpha, "sink_frames": self.cache.sink_frames,
                "attention_frames": self.cache.attention_frames, "chunk_frames": self.cache.chunk_frames}  # fmt: skip
        listed = ",".join(f"{{at:{s['at']!r},prompt:{hydra_string(s['prompt'])}}}" for s in schedule)
        args = [*self.overrides, f"seed={self.start.seed}", f"seconds={seconds!r}",
                f"recache_on_switch={str(self.start.recache).lower()}",
                *(f"sink.{k}={v}" for k, v in sink.items()), f"schedule=[{listed}]", "out=stream.mp4"]  # fmt: skip
        return {
            "prompt": self.start.prompt,
            "schedule": schedule,
            "seed": self.start.seed,
            "seconds": seconds,
            "recache_on_switch": self.start.recache,
            "sink": sink,
            "command": shlex.join(["python", "-m", "rf.generate", *args]),
        }

    def mp4_bytes(self) -> bytes | None:
        """The mp4 so far (whole once the stream ended); None before the first frame."""
        with self.lock:
            if self.writer.frames_written == 0:
                return None
            path = self.writer.path if self.finished else self.writer.partial_path
            return path.read_bytes() if path.exists() else None

    def close(self) -> None:
        """Remove the stream's folder (after run() has returned) and drop the callbacks, which refer back to the
        server's objects (no cycle left for the GC to find late)."""
        self.folder.cleanup()
        self.on_event = self.last_seen = None

    # -- the worker thread -------------------------------------------------------------------------------------
    def run(self) -> None:
        """Stream until stopped, idle, or max_seconds; every outcome ends with an `ended` event."""
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                self._stream()
        except Exception as err:  # a bug or a device error: this stream ends, the server goes on
            traceback.print_exc()
            self.reason = f"error: {err}"
        finally:
            self.streamer.sampler.last_cache = None  # this stream's KV cache: freed now, not when the GC finds it
            try:
                self._recorded(backlog=0)  # every chunk sent is in the mp4 before it is closed
            except Exception as err:
                traceback.print_exc()
                self.reason = self.reason or f"error: the mp4 could not be written: {err}"
            self.recorder.shutdown(wait=True)
            self.encoder.shutdown(wait=True)
            with self.lock:
                if self.writer.frames_written:
                    self.writer.close()
                else:
                    self.writer.abort()
                self.finished = True
            self.on_event({"type": "ended", "reason": self.reason or "max_seconds", "chunks": self.chunks_done,
                           "seconds": self.chunk_start(self.chunks_done)}, [])  # fmt: skip

    def _stream(self) -> None:
        s = self.streamer
        s.decoder.reset()  # the decoder's causal state belongs to the last stream
        prompts = [(0, s.text_encoder([self.start.prompt]))]  # [(first chunk, [1, Lt, text_dim])], grows below
        shape = s.latent_shape(self.max_chunks * self.cache.chunk_frames)
        noise = GeneratorNoise(self.start.seed, s.device)
        chunks = s.sampler.stream(prompts, shape, noise, recache_on_switch=self.start.recache)
        begun = time.perf_counter()  # reset at the first chunk
        while not self.stopped.is_set():
            tick = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            frames = s.decoder.decode(chunk.latents)  # [1, 3, t, H, W] in [-1, 1]
            if s.device.type == "cuda":
                torch.cuda.synchronize(s.device)
            stamp_ms = time.time() * 1000  # decoded: the page's chunk latency starts here
            # the page plays a chunk from its arrival, or after the frames before it: a chunk decoded after its place
            # in the video (a slow chunk) delays the page's playout from then on, and the real-time clock with it
            # (at chunk 0, chunk_start 0: the clock starts here)
            begun = max(begun, time.perf_counter() - self.chunk_start(chunk.index))
            compute = time.perf_counter() - tick
            pixels = to_uint8(frames)  # [t, H, W, 3]
            encode = functools.partial(encode_image, fmt=self.frame_format, quality=self.quality)
            images = list(self.encoder.map(encode, pixels))  # in order; the threads at once
            self.chunks_done = chunk.index + 1
            self.on_event({"type": "chunk", "index": chunk.index, "prompt_index": chunk.prompt_index,
                           "frames": len(images), "stamp_ms": stamp_ms, "compute_s": compute,
                           "seconds": self.chunk_start(chunk.index)}, images)  # fmt: skip
            self.recording.append(self.recorder.submit(self._record, frames[0].to("cpu", torch.float32, copy=True)))
            self._recorded(backlog=RECORD_BACKLOG)
            if time.monotonic() - self.last_seen() > self.idle_seconds:
                self.stop(f"idle: no message for {self.idle_seconds:g} s (idle_seconds)")
            if self.chunks_done == self.max_chunks or self.stopped.is_set():
                break
            if self.pace:  # the next chunk starts when the frames made so far have played in real time (lead 0:
                # the page's queue is empty when it arrives, so it is drawn at once; a chunk's compute time is a
                # pause of the last frame, about one frame at 8 fps on the CPU)
                self.stopped.wait(max(0.0, self.chunk_start(self.chunks_done) - (time.perf_counter() - begun)))
            self._apply_switch(prompts, chunk.index + 1)  # after the wait: a prompt typed meanwhile counts now

    def _record(self, frames: torch.Tensor) -> None:
        """The recorder thread: append a chunk's frames [3, t, H, W] in [-1, 1] to the mp4."""
        with self.lock:
            self.writer.write(frames)

    def _recorded(self, backlog: int) -> None:
        """Wait until at most `backlog` chunks are still being written; a failed write raises here."""
        while self.recording and (len(self.recording) > backlog or self.recording[0].done()):
            self.recording.popleft().result()

    def _apply_switch(self, prompts: list, next_chunk: int) -> None:
        prompt = None
        while not self.pending.empty():  # the page allows one pending switch; the newest wins regardless
            prompt = self.pending.get_nowait()
        if prompt is None:
            return
        prompts.append((next_chunk, self.streamer.text_encoder([prompt])))
        self.switches.append((next_chunk, prompt))
        self.on_event({"type": "switched", "prompt_index": len(self.switches) - 1, "chunk": next_chunk,
                       "at": self.chunk_start(next_chunk), "prompt": prompt}, [])  # fmt: skip
