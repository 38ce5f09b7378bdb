"""rf.serve.live: the mp4 is written beside the stream, not in its way.

A chunk's frames reach the page before its mp4 write (H.264 at full size costs about 0.25 s of CPU per chunk), the
recorder lags at most RECORD_BACKLOG chunks, every chunk sent is in the finished mp4, and a write that fails ends
the stream with the reason instead of being lost in the recorder's thread.
"""

import threading
import time

import pytest
from hydra import compose, initialize_config_dir

from rf.serve.live import RECORD_BACKLOG, LiveStream
from rf.serve.protocol import Start
from rf.stream import Streamer
from rf.toy.shipped import use_shipped
from rf.utils.cli import CONF_DIR

PROMPT = "a red circle moving fast to the right on a striped background"
CHUNKS = 6
SLOW = 0.3  # seconds per mp4 write: longer than a toy chunk's compute, so the backlog fills


@pytest.fixture(scope="module")
def streamer() -> Streamer:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("serve")
    return Streamer.from_config(cfg, ckpt=use_shipped(cfg))


def live(streamer: Streamer, events: list) -> LiveStream:
    stream = LiveStream(
        streamer, Start(PROMPT, "ema_sink", 0.99, False, 0), cache=streamer.cache,
        chunks=CHUNKS, on_event=lambda msg, images: events.append((time.perf_counter(), msg, len(images))),
        last_seen=time.monotonic, idle_seconds=600, pace=False,
    )  # fmt: skip
    return stream


def run(stream: LiveStream) -> None:
    worker = threading.Thread(target=stream.run)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()


def test_frames_are_sent_before_the_slow_mp4_write_and_all_are_recorded(streamer):
    events: list = []
    stream = live(streamer, events)
    write = stream.writer.write
    started: list[float] = []
    finished: list[float] = []

    def slow_write(frames):
        started.append(time.perf_counter())
        time.sleep(SLOW)
        write(frames)
        finished.append(time.perf_counter())

    stream.writer.write = slow_write
    run(stream)
    chunks = [(t, m) for t, m, _ in events if m["type"] == "chunk"]
    assert [m["index"] for _, m in chunks] == list(range(CHUNKS))
    assert events[-1][1]["type"] == "ended" and events[-1][1]["reason"] == "max_seconds"
    # each chunk's frames went out before its own mp4 write began (before, the write came first)
    assert all(sent < began for (sent, _), began in zip(chunks, started, strict=True))
    # the recorder lags at most RECORD_BACKLOG + 1 chunks when the next one is sent: memory stays bounded
    for k, (sent, _) in enumerate(chunks):
        assert k - sum(done < sent for done in finished) <= RECORD_BACKLOG + 1
    assert stream.writer.frames_written == sum(m["frames"] for _, m in chunks)  # every frame sent is in the mp4
    assert stream.writer.path.exists() and stream.finished  # whole: the mp4 was finalised after the last write
    stream.close()


def test_a_failed_mp4_write_ends_the_stream_with_the_reason(streamer):
    events: list = []
    stream = live(streamer, events)

    def broken(frames):
        raise OSError("no space left on device")

    stream.writer.write = broken
    run(stream)
    ended = [m for _, m, _ in events if m["type"] == "ended"]
    assert len(ended) == 1 and "no space left on device" in ended[0]["reason"]
    assert sum(m["type"] == "chunk" for _, m, _ in events) <= RECORD_BACKLOG + 2  # it stopped early
    stream.close()
