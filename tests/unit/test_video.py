import subprocess
import sys

import pytest
import torch

from rf.utils import video as video_module
from rf.utils.video import StreamingVideoWriter, contact_sheet, probe, read_video, write_video


def moving_gradient(T: int, H: int = 32, W: int = 48) -> torch.Tensor:
    """Smooth content that drifts a little each frame: [3, T, H, W] in [-0.8, 0.8]."""
    t = torch.arange(T, dtype=torch.float32).view(T, 1, 1)
    y = torch.linspace(0, 1, H).view(1, H, 1)
    x = torch.linspace(0, 1, W).view(1, 1, W)
    channels = [torch.sin(3 * x + 0.2 * t + y), torch.cos(2 * y + 0.1 * t), torch.sin(2 * (x + y) - 0.15 * t)]
    return 0.8 * torch.stack([c.expand(T, H, W) for c in channels])


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_round_trip(tmp_path, monkeypatch, codec):
    if codec not in video_module._av().codecs_available:
        pytest.skip(f"{codec} not in this PyAV build")
    monkeypatch.setattr(video_module, "_codec_name", lambda: codec)
    video = moving_gradient(24)
    path = write_video(tmp_path / "clip.mp4", video, fps=8)
    assert path == tmp_path / "clip.mp4" and not (tmp_path / "clip.partial.mp4").exists()
    assert probe(path) == dict(frames=24, fps=8.0, height=32, width=48)
    decoded, fps = read_video(path)
    assert decoded.shape == (3, 24, 32, 48) and fps == 8.0
    assert (decoded - video).abs().mean() < 0.05


def test_streaming_chunks(tmp_path):
    video = moving_gradient(21)
    writer = StreamingVideoWriter(tmp_path / "clip.mp4", fps=8, height=32, width=48)
    for chunk in video.split(7, dim=1):
        writer.write(chunk[None])  # the generator's [B=1, 3, T, H, W]
    assert writer.frames_written == 21
    path = writer.close()
    assert read_video(path)[0].shape[1] == 21


KILLED_WRITER = """
import os, signal, torch
from rf.utils.video import StreamingVideoWriter
writer = StreamingVideoWriter({path!r}, fps=8, height=32, width=48)
for chunk in torch.load({frames!r}).split(7, dim=1):
    writer.write(chunk)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_hard_kill_keeps_all_but_the_newest_frame(tmp_path):
    """The guarantee: once write() returns with N frames written, a SIGKILL leaves exactly N - 1 decodable."""
    path, video = tmp_path / "clip.mp4", moving_gradient(21)
    torch.save(video, tmp_path / "frames.pt")
    script = KILLED_WRITER.format(path=str(path), frames=str(tmp_path / "frames.pt"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    partial = tmp_path / "clip.partial.mp4"
    assert partial.exists() and not path.exists()
    decoded, fps = read_video(partial)
    assert decoded.shape == (3, 20, 32, 48) and fps == 8.0
    assert (decoded - video[:, :20]).abs().mean() < 0.05


def test_context_manager_keeps_partial_on_exception(tmp_path):
    path = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="generator blew up"):
        with StreamingVideoWriter(path, fps=8, height=32, width=48) as writer:
            writer.write(moving_gradient(5))
            raise RuntimeError("generator blew up")
    assert not path.exists()
    # abort finalises the partial, so unlike a hard kill nothing is lost
    assert read_video(tmp_path / "clip.partial.mp4")[0].shape[1] == 5


def test_abort_without_frames_removes_partial(tmp_path):
    writer = StreamingVideoWriter(tmp_path / "clip.mp4", fps=8, height=32, width=48)
    assert writer.abort() is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, value",
    [
        (dict(path="clip.mp4", width=47), "width=47"),
        (dict(path="missing/clip.mp4"), "missing"),
        (dict(path="clip.avi"), "clip.avi"),
    ],
)
def test_bad_writer_arguments(tmp_path, kwargs, value):
    kwargs = dict(fps=8, height=32, width=48) | kwargs
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(ValueError, match=value):
        StreamingVideoWriter(**kwargs)


def test_frames_of_wrong_size(tmp_path):
    writer = StreamingVideoWriter(tmp_path / "clip.mp4", fps=8, height=32, width=48)
    with pytest.raises(ValueError, match=r"\(3, 4, 32, 40\)"):
        writer.write(torch.zeros(3, 4, 32, 40))
    assert writer.abort() is None


def test_contact_sheet_shape():
    sheet = contact_sheet(moving_gradient(40), columns=8, max_frames=12)
    assert sheet.shape == (2 * 32, 8 * 48, 3) and sheet.dtype == torch.uint8
    assert contact_sheet(moving_gradient(3)).shape == (32, 3 * 48, 3)


def test_what_only_checks_frame_sizes_imports_without_pyav():
    """The bench and the stream builder import rf.utils.video for check_frame_size alone: they load on a machine
    without PyAV (a GPU box the wheel was not carried to), and reading a video there says PyAV is missing."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['av'] = None\n"  # import av raises ModuleNotFoundError
        "import rf.bench, rf.stream, rf.utils.video as video\n"
        "video.check_frame_size(480, 832, 8, 2)\n"
        "try:\n    video.read_video('x.mp4')\nexcept ModuleNotFoundError as e:\n    print('missing', e.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "missing av"
