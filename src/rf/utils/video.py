"""Video files in and out: a crash-safe streaming mp4 writer, a reader, and a contact sheet for logs.

Videos are torch tensors [3, T, H, W] with values in [-1, 1], the layout the generator produces.

The writer exists so that a long autoregressive generation never loses what it has already made: every
write() is encoded and muxed at once into NAME.partial.mp4, a fragmented mp4 whose header comes first,
so the file plays at any moment, even after a SIGKILL. Only close() renames it to NAME.mp4.

Crash guarantee: once write() has returned with `frames_written == N`, a hard kill leaves on disk a
partial file that decodes to exactly the first N - 1 frames. The mp4 muxer closes a fragment only when the
next packet arrives (PyAV exposes no explicit fragment flush), so the newest frame is the one at risk.
"On disk" means handed to the OS: it survives the process dying, not a power cut.

A write that fails (a full disk: ENOSPC) raises VideoWriteError naming the file; what was written before
stays in NAME.partial.mp4 (nothing stays if no frame was written).
"""

from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from rf.utils.files import replace_file

if TYPE_CHECKING:
    import av


def _av():
    """PyAV, imported where a video is read or written: what only checks frame sizes (the bench, the stream
    builder) runs without it."""
    import av

    return av


# frag_every_frame: each frame becomes its own fragment as soon as the next one arrives (see above).
# empty_moov: the header is written first, so the file never needs the moov that a clean close appends.
# default_base_moof: what browsers (MSE) expect of fragmented mp4.
_MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"


@functools.cache
def _codec_name() -> str:
    # Pip wheels of PyAV ship libx264; minimal FFmpeg builds lack it, and mpeg4 is always there.
    return "libx264" if "libx264" in _av().codecs_available else "mpeg4"


def _fps(stream: av.video.stream.VideoStream) -> float:
    # from the timestamps; guessed_rate would fall back to the time base (16384) for a video with no frames
    return float(stream.average_rate or 0)


class VideoWriteError(OSError):
    """The OS refused a write of the video (errno kept: ENOSPC for a full disk); str() is the whole message."""

    def __str__(self) -> str:
        return self.strerror


def _write_error(err: OSError, path: Path) -> VideoWriteError:
    reason = err.strerror or str(err)
    return VideoWriteError(err.errno, f"cannot write {path}: {reason} (free space there or choose another output)")


def check_frame_size(height: int, width: int, spatial: int, patch: int) -> None:
    """Frames must tile into the transformer's patches in latent space (autoencoder factor x patch size: 16 for
    Wan, 4 for the toy) and be even (yuv420p mp4)."""
    step = math.lcm(spatial * patch, 2)
    for name, v in (("height", height), ("width", width)):
        if v <= 0 or v % step:
            below, above = v // step * step, (max(v, 0) // step + 1) * step
            hint = f"{below} or {above}" if below > 0 else str(above)
            raise ValueError(
                f"model.video.{name}={v} must be a positive multiple of {step} (autoencoder {spatial} x patch "
                f"{patch}): use {hint}"
            )


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class StreamingVideoWriter:
    """Write frames to `path` as they arrive; a crash leaves a playable `NAME.partial.mp4`."""

    def __init__(self, path: str | Path, fps: int, height: int, width: int, crf: int = 18):
        path = Path(path)
        if path.suffix != ".mp4":
            raise ValueError(f"video path {str(path)!r} must end in .mp4")
        if not path.parent.is_dir():
            raise ValueError(f"folder {str(path.parent)!r} of {path.name!r} does not exist; create it first")
        for name, size in (("height", height), ("width", width)):
            if size <= 0 or size % 2:
                raise ValueError(f"{name}={size} must be a positive even number (yuv420p halves it)")
        if fps <= 0:
            raise ValueError(f"fps={fps} must be a positive integer")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf={crf} must be in [0, 51]")

        self.path = path
        self.partial_path = path.with_suffix(".partial.mp4")
        self.height, self.width = height, width
        self.frames_written = 0

        # flush_packets: push every muxed packet out of FFmpeg's IO buffer to the OS straight away.
        try:
            self._container = _av().open(
                str(self.partial_path),
                "w",
                format="mp4",
                options={"movflags": _MOVFLAGS, "flush_packets": "1"},
            )
        except OSError as err:
            raise _write_error(err, self.partial_path) from err
        try:
            self._start(fps, crf)
        except OSError as err:  # e.g. the header hit a full disk: leave nothing behind
            container, self._container = self._container, None
            with contextlib.suppress(OSError):
                container.close()
            self.partial_path.unlink(missing_ok=True)
            raise _write_error(err, self.partial_path) from err

    def _start(self, fps: int, crf: int) -> None:
        codec = _codec_name()
        if codec == "libx264":
            # zerolatency: no lookahead and no B-frames, so encode() returns each frame's packet immediately
            options = {"crf": str(crf), "tune": "zerolatency"}
        else:
            # mpeg4 has no crf; a fixed quantiser of crf / 6 gives a similar quality ladder (18 -> 3)
            options = {"flags": "+qscale", "global_quality": str(max(1, crf // 6) * 118)}
        self._stream = self._container.add_stream(codec, rate=fps, options=options)
        self._stream.height, self._stream.width = self.height, self.width
        self._stream.pix_fmt = "yuv420p"
        # a keyframe every second bounds seeking and recovery cost in the finished file
        self._stream.codec_context.gop_size = fps
        # write the header now rather than with the first frame, so the partial file is valid from the start
        self._container.start_encoding()

    def write(self, frames: torch.Tensor) -> None:
        if self._container is None:
            raise ValueError(f"writer for {str(self.path)!r} is already closed")
        if frames.ndim == 5 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 4 or frames.shape[0] != 3 or tuple(frames.shape[-2:]) != (self.height, self.width):
            raise ValueError(
                f"frames of shape {tuple(frames.shape)} must be [1, 3, T, H, W] or [3, T, H, W] "
                f"with (H, W) = ({self.height}, {self.width})"
            )
        if not frames.is_floating_point():
            raise ValueError(f"frames of dtype {frames.dtype} must be floating point in [-1, 1]")

        pixels = _to_uint8(frames).permute(1, 2, 3, 0).cpu().numpy()  # [T, H, W, 3]
        video_frame = _av().VideoFrame
        for image in pixels:
            frame = video_frame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames_written  # in the codec time base, 1 / fps
            try:
                self._container.mux(self._stream.encode(frame))
            except OSError as err:
                raise _write_error(err, self.partial_path) from err
            self.frames_written += 1

    def _finish(self) -> None:
        # drain the encoder and write the trailer, which muxes the last fragment
        container, self._container = self._container, None
        try:
            container.mux(self._stream.encode(None))
        finally:
            container.close()

    def close(self) -> Path:
        if self._container is not None:
            try:
                self._finish()
            except OSError as err:
                raise _write_error(err, self.partial_path) from err
            replace_file(self.partial_path, self.path)  # fsynced first: a power cut cannot name missing data
        return self.path

    def abort(self) -> Path | None:
        if self._container is not None:
            with contextlib.suppress(OSError):  # a full disk cannot take the trailer either: keep what is there
                self._finish()
        if self.frames_written == 0:
            self.partial_path.unlink(missing_ok=True)
            return None
        return self.partial_path

    def __enter__(self) -> StreamingVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()  # returning None lets the exception propagate


def probe(path: str | Path) -> dict:
    """Frame count, fps and size, read from the container without decoding."""
    with _av().open(str(path)) as container:
        stream = container.streams.video[0]
        # fragmented mp4 has no global frame count, so count the packets; the demuxer ends with an empty one
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        return dict(
            frames=frames,
            fps=_fps(stream),
            height=stream.codec_context.height,
            width=stream.codec_context.width,
        )


def read_video(path: str | Path) -> tuple[torch.Tensor, float]:
    """Decode a whole video -> (frames [3, T, H, W] float in [-1, 1], fps)."""
    with _av().open(str(path)) as container:
        stream = container.streams.video[0]
        fps = _fps(stream)
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]  # T x [H, W, 3]
        height, width = stream.codec_context.height, stream.codec_context.width
    # a partial file killed right after its first frame holds no complete frame yet
    empty = torch.zeros(0, height, width, 3, dtype=torch.uint8)
    pixels = torch.from_numpy(np.stack(images)) if images else empty  # [T, H, W, 3]
    return pixels.permute(3, 0, 1, 2).float() / 127.5 - 1, fps


def write_video(path: str | Path, video: torch.Tensor, fps: int) -> Path:
    """Write a whole video [3, T, H, W] in one go; returns the final path."""
    if video.ndim != 4:
        raise ValueError(f"video of shape {tuple(video.shape)} must be [3, T, H, W]")
    with StreamingVideoWriter(path, fps, height=video.shape[-2], width=video.shape[-1]) as writer:
        writer.write(video)
    return writer.path


def contact_sheet(video: torch.Tensor, columns: int = 8, max_frames: int = 32) -> torch.Tensor:
    """[3, T, H, W] in [-1, 1] -> uint8 image [rows * H, columns * W, 3] of evenly spaced frames."""
    if video.ndim != 4 or video.shape[0] != 3 or video.shape[1] == 0:
        raise ValueError(f"video of shape {tuple(video.shape)} must be [3, T, H, W] with T >= 1")
    if columns < 1 or max_frames < 1:
        raise ValueError(f"columns={columns} and max_frames={max_frames} must both be >= 1")
    _, T, H, W = video.shape
    n = min(T, max_frames)
    index = torch.linspace(0, T - 1, n).round().long()  # first and last frame always included
    columns = min(columns, n)
    rows = -(-n // columns)
    frames = _to_uint8(video[:, index].cpu())  # [3, n, H, W]
    blank = torch.zeros(3, rows * columns - n, H, W, dtype=torch.uint8)  # black cells fill the last row
    grid = torch.cat([frames, blank], dim=1).view(3, rows, columns, H, W)
    return grid.permute(1, 3, 2, 4, 0).reshape(rows * H, columns * W, 3)
