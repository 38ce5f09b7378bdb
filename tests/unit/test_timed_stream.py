"""The timed stream (rf.fast.timing.Stream) with an overlapped decode: when the host waits for a chunk's frames, and
on which stream the DiT's passes are queued. On the CPU, with a sampler and a decoder that log what they are asked."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from rf.diffusion.sampler import StreamChunk
from rf.fast.fast_path import FastPath
from rf.fast.timing import Stream


class LoggingSampler:
    """Yields one-frame chunks of zeros and logs each as it is queued."""

    chunk_frames = 1

    def __init__(self, log: list):
        self.log = log

    def stream(self, prompts, shape, noise):
        for i in range(shape[2]):
            self.log.append(("queued", i))
            yield StreamChunk(index=i, latents=torch.zeros(1, 4, 1, 2, 2), prompt_index=0)


class LoggedFrames:
    """What OverlappedDecoder.submit returns; the host reads `frames` only once it has waited for them."""

    def __init__(self, log: list, index: int):
        self.log, self.index, self.done = log, index, 0.0

    @property
    def frames(self) -> torch.Tensor:
        self.log.append(("frames", self.index))
        return torch.zeros(1, 3, 1, 2, 2)


class LoggingDecoder:
    """An overlapped decoder (submit returns at once) that logs its submits and its main stream."""

    overlapped = True

    def __init__(self, log: list, lag: int):
        self.log, self.lag, self.submitted = log, lag, 0

    def reset(self):
        self.submitted = 0

    def submit(self, latents, first=False):
        self.log.append(("submitted", self.submitted, first))
        self.submitted += 1
        return LoggedFrames(self.log, self.submitted - 1)

    @contextmanager
    def main_stream(self):
        self.log.append("enter main stream")
        yield
        self.log.append("exit main stream")


def streamed(lag: int, chunks: int = 4) -> list:
    log = []
    timed = Stream(LoggingSampler(log), LoggingDecoder(log, lag), None, (1, 4, 0, 2, 2), torch.device("cpu"), 0, None)
    out = timed.run(chunks)
    assert out["chunks"] == chunks and out["frames"] == chunks
    return log


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_the_host_waits_for_chunk_i_once_chunk_i_plus_lag_is_queued(lag):
    log = [e for e in streamed(lag) if e[0] in ("queued", "frames")]
    for i in range(4):
        waited = log.index(("frames", i))
        queued = [e[1] for e in log[:waited] if e[0] == "queued"]
        assert max(queued) == min(i + lag, 3)  # every chunk up to i + lag queued before, none after it
    assert [e[1] for e in log if e[0] == "frames"] == [0, 1, 2, 3]  # in order


def test_the_dits_passes_and_the_submits_are_queued_inside_the_decoders_main_stream():
    log = streamed(2)
    assert log[0] == "enter main stream" and log[-1] == "exit main stream"
    submits = [e for e in log if e[0] == "submitted"]
    assert submits == [("submitted", i, i == 0) for i in range(4)]  # only the stream's first chunk is marked first


def test_the_priority_and_lag_switches_are_refused_where_they_mean_nothing():
    with pytest.raises(ValueError, match="fast.dit_priority=true puts the DiT's stream ahead .* set fast.overlap=true"):
        FastPath(dit_priority=True)
    with pytest.raises(ValueError, match="fast.dit_priority=true and fast.decode_priority=true each put one stream"):
        FastPath(overlap=True, dit_priority=True, decode_priority=True)
    with pytest.raises(ValueError, match="fast.decode_lag=0: .* set 1 or more"):
        FastPath(overlap=True, decode_lag=0)
    with pytest.raises(ValueError, match="fast.decode_lag=2 lets the overlapped decode trail .* set fast.overlap=true"):
        FastPath(decode_lag=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA streams need a CUDA device")
@pytest.mark.parametrize("switches, side, main", [({}, 0, None), ({"decode_priority": True}, -1, None),
                                                  ({"dit_priority": True, "decode_lag": 2}, 0, -1)])  # fmt: skip
def test_the_priority_switches_set_the_streams_priorities(switches, side, main):
    from rf.fast.overlap import OverlappedDecoder

    autoencoder = SimpleNamespace(stream_decoder=lambda: LoggingDecoder([], 1))  # no decoder switches to apply
    decoder = FastPath(overlap=True, **switches).prepare_decoder(autoencoder, torch.device("cuda"))
    assert isinstance(decoder, OverlappedDecoder) and decoder.side.priority == side
    assert (decoder.main.priority if decoder.main is not None else None) == main
    assert decoder.lag == switches.get("decode_lag", 1)
