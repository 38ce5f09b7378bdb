"""Interrupted Re-DMD runs lose nothing: after SIGTERM or SIGKILL, the same command finishes the run exactly.

A tiny toy Re-DMD run (checkpoint every 2 iterations) is stopped at a chosen point and relaunched with
the same command; its final generator, critic, optimiser states and generator EMA must equal those of
an uninterrupted run. The stop points are deterministic: `interrupt.py` (below, written next to the run)
runs `rf.train` in-process with one hook that, at the chosen point, writes a marker file and waits; the
test polls for the marker and sends the signal from outside, as a scheduler or the OOM killer would.

    mid_iteration:K   in micro step K, after the generator's step and the critic's backward, before
                      the critic's step: the process holds a half-done iteration
    in_save:N         the N-th checkpoint write has put half of its bytes on disk

The stop table (below them) does the same for every long command: SIGINT or SIGTERM at a deterministic point of
its loop, then what was kept, the one line that says so, the exit status (128 + the signal) and, for the
commands that resume, the same command finishing the work:

    generate        after_write:1     the first chunk is in the mp4         NAME.mp4 of that chunk, renamed, sheet
    evaluate        after_video:1     the first of 2 videos is made         1 video + manifest, nothing scored
    make_ode_pairs  after_solve:3     shard 2's first pair is solved        shard 1 (2 pairs); the part shard dropped
    encode_prompts  after_encode:1    the first of 3 prompts is encoded     1 cache entry, whole
    bench           before_variant:2  the 2nd of 3 variants starts          2 variants in the json, marked stopped
    train           mid_iteration:4   iteration 5 is half done              last.ckpt of iteration 5 (above)
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rf.utils.video import probe
from tests.cli import THREADS, files_under, run_rf, write_tiny_re_dmd

# The tiny toy Re-DMD (tests.cli): 7 iterations, 4 of them generator steps, a checkpoint every 2.
TINY = dict(
    module={"max_iterations": 7, "generator_every": 2},
    optim={"lr_generator": 1.0e-3, "lr_critic": 1.0e-3},
    trainer={"enable_progress_bar": False},
    checkpoint_every=2,
    callbacks={"generator_ema": {"start_iteration": 0}, "video_log": None},
)

INTERRUPT = """
import io, os, runpy, sys, time
from pathlib import Path

import torch

import rf.utils.stop

point, n = os.environ["RF_TEST_PAUSE"].split(":")
n, marker = int(n), Path(os.environ["RF_TEST_MARKER"])
module = os.environ.get("RF_TEST_MODULE", "rf.train")
received, calls = [], []
handle = rf.utils.stop.Stop._handle


def noted(self, signum, frame):  # the clean-stop loops' handler, noting that the signal arrived
    received.append(signum)
    return handle(self, signum, frame)


rf.utils.stop.Stop._handle = noted


def pause(until=lambda: False):
    marker.write_text(str(os.getpid()))
    while not until():
        time.sleep(0.01)


def after(cls, name, before=False):
    # cls.name pauses at its n-th call (before or after it runs) until the test's signal has arrived
    original = getattr(cls, name)

    def paused(*args, **kwargs):
        calls.append(name)
        if before and len(calls) == n:
            pause(until=lambda: received)
        out = original(*args, **kwargs)
        if not before and len(calls) == n:
            pause(until=lambda: received)
        return out

    setattr(cls, name, paused)


if point == "after_write":
    from rf.utils.video import StreamingVideoWriter

    after(StreamingVideoWriter, "write")
elif point == "after_video":
    from rf.eval.generation import StreamGenerator

    after(StreamGenerator, "generate")
elif point == "after_solve":
    import rf.diffusion.ode

    after(rf.diffusion.ode, "euler_solve")
elif point == "after_encode":
    from rf.toy.text import ToyTextEncoder

    after(ToyTextEncoder, "forward")
elif point == "before_variant":
    from rf.fast.fast_path import FastPath

    after(FastPath, "prepare_model", before=True)
elif point == "mid_iteration":
    from rf.lit.distill import DistillModule

    end_step = DistillModule.end_step

    def paused(self, bad):
        if self.micro_step == n:
            pause(until=lambda: self.trainer.received_sigterm)  # SIGTERM: Lightning's handler sets the flag
        return end_step(self, bad)

    DistillModule.end_step = paused
elif point == "in_save":
    from lightning.pytorch.plugins.io.torch_plugin import TorchCheckpointIO

    save, calls = TorchCheckpointIO.save_checkpoint, []

    def half_written(self, checkpoint, path, storage_options=None):
        calls.append(path)
        if len(calls) == n:
            data = io.BytesIO()
            torch.save(checkpoint, data)
            with open(path, "wb") as f:
                f.write(data.getvalue()[: len(data.getvalue()) // 2])
            pause()
        return save(self, checkpoint, path, storage_options)

    TorchCheckpointIO.save_checkpoint = half_written
sys.argv = [module, *sys.argv[1:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def setup_run(path):
    return write_tiny_re_dmd(path, **TINY)


def final_state(run):
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("uninterrupted")
    r = run_rf("train", *setup_run(path), runs=path)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = final_state(path / "toy_re_dmd")
    assert ckpt["rf_loop"]["micro_step"] == 7 and ckpt["rf_loop"]["generator_steps"] == 4
    return ckpt


def interrupt(path, args, pause: str, sig: signal.Signals, module: str = "rf.train") -> subprocess.CompletedProcess:
    """Run `python -m MODULE args` until the pause point, send `sig`, wait for the process to end."""
    (path / "interrupt.py").write_text(INTERRUPT)
    marker = path / "paused"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "RF_RUNS": str(path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS,
           "RF_TEST_PAUSE": pause, "RF_TEST_MARKER": str(marker), "RF_TEST_MODULE": module}  # fmt: skip
    # a file, not a pipe: a full pipe would block the run; errors="replace": a progress bar's write cut by the
    # signal may end mid-character
    log = open(path / "interrupted.log", "w+", encoding="utf-8", errors="replace")
    proc = subprocess.Popen([sys.executable, "interrupt.py", *args], cwd=path, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    log.seek(0)
    assert marker.exists(), f"never reached {pause}:\n{log.read()[-3000:]}"
    proc.send_signal(sig)
    proc.wait(timeout=120)
    log.seek(0)
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read(), "")


def assert_same_run(resumed: dict, straight: dict) -> None:
    assert resumed["rf_loop"] == straight["rf_loop"]
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for name, value in straight["state_dict"].items():  # generator and critic
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    for opt_r, opt_s in zip(resumed["optimizer_states"], straight["optimizer_states"], strict=True):
        for i, state in opt_s["state"].items():
            for k, v in state.items():
                torch.testing.assert_close(opt_r["state"][i][k], v, rtol=0, atol=1e-6, msg=f"optimizer {i} {k}")
    ema_r, ema_s = resumed["callbacks"]["GeneratorEMA"], straight["callbacks"]["GeneratorEMA"]
    assert ema_r["updates"] == ema_s["updates"] == 4
    for name, value in ema_s["shadow"].items():
        torch.testing.assert_close(ema_r["shadow"][name], value, rtol=0, atol=1e-6, msg=f"ema {name}")
    assert resumed["callbacks"]["Reward"] == pytest.approx(straight["callbacks"]["Reward"], rel=1e-6)


@pytest.mark.parametrize(
    "sig, saved_at",
    [
        # Lightning finishes iteration 5, the checkpoint callback saves it (after the EMA has taken that
        # iteration's generator step), and the process exits with status 143 (128 + SIGTERM), saying so
        pytest.param(signal.SIGTERM, 5, id="SIGTERM"),
        pytest.param(signal.SIGINT, 5, id="SIGINT"),  # Ctrl-C: the same clean stop, status 130
        pytest.param(signal.SIGKILL, 4, id="SIGKILL"),  # nothing of iteration 5 survives: last.ckpt is iteration 4's
    ],
)
def test_signal_mid_iteration_then_the_same_command_finishes_the_run_exactly(tmp_path, uninterrupted, sig, saved_at):
    args = setup_run(tmp_path)
    last = tmp_path / "toy_re_dmd" / "checkpoints" / "last.ckpt"
    r = interrupt(tmp_path, args, "mid_iteration:4", sig)  # micro step 4: iteration 5, a generator iteration
    assert r.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), r.stdout[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["rf_loop"]["micro_step"] == saved_at
    if sig != signal.SIGKILL:
        assert_stop_line(r.stdout, sig, f"{last} holds iteration 5", "python -m rf.train")

    r = run_rf("train", *args, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming from {last}" in r.stdout
    assert_same_run(final_state(tmp_path / "toy_re_dmd"), uninterrupted)


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_last_ckpt(tmp_path, uninterrupted):
    args = setup_run(tmp_path)
    folder = tmp_path / "toy_re_dmd" / "checkpoints"
    r = interrupt(tmp_path, args, "in_save:2", signal.SIGKILL)  # the save of iteration 4, half on disk
    assert r.returncode == -signal.SIGKILL, r.stdout[-3000:]
    (partial,) = folder.glob(".last.ckpt.tmp-*")
    with pytest.raises(RuntimeError):  # the half-written file is really broken...
        torch.load(partial, map_location="cpu", weights_only=False)
    kept = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)  # ...and last.ckpt is not
    assert kept["rf_loop"]["micro_step"] == 2

    r = run_rf("train", *args, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stdout
    assert not list(folder.glob(".last.ckpt.tmp-*"))  # the relaunch deleted the half-written file
    assert_same_run(final_state(tmp_path / "toy_re_dmd"), uninterrupted)


# ----- the stop table: every long command, SIGINT or SIGTERM at a point of its loop ------------------------


def assert_stop_line(output: str, sig: signal.Signals, kept: str, command: str) -> None:
    """The one line a clean stop prints: which signal, what was kept, the command that continues."""
    lines = [line for line in output.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith(f"stopped by {sig.name}: ") and kept in lines[0] and command in lines[0], lines[0]
    assert "Traceback" not in output, output[-3000:]


ODE = ["teacher_ckpt=null", "num_pairs=4", "shard_size=2", "batch_size=1", "ode_steps=4", "latent_frames=3"]
TINY_EVAL = ["model.video.height=16", "model.video.width=16", "toy_prompts=2", "seeds=1", "frames=15",
             "model.transformer.num_layers=1", "model.transformer.ffn_dim=64"]  # fmt: skip
BENCH = ["model=toy", "variants=cpu", "clip_seconds=1", "stream_seconds=1", "repeats=1", "warmup_chunks=1",
         "minutes=[]", "check_chunks=1"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_generate_stop_finalises_the_mp4_of_what_streamed(tmp_path, sig):
    out = tmp_path / "clip.mp4"
    args = ["frames=9", f"out={out}"]  # 3 chunks of 3 latent frames; the toy autoencoder maps frames 1 to 1
    r = interrupt(tmp_path, args, "after_write:1", sig, module="rf.generate")
    assert r.returncode == 128 + sig, r.stdout[-3000:]
    assert out.is_file() and not out.with_suffix(".partial.mp4").exists() and out.with_suffix(".png").is_file()
    assert probe(out)["frames"] == 3  # the first chunk's frames, whole: the stream ended after it
    assert_stop_line(r.stdout, sig, f"{out} holds the first 0.4 s of 1.1 (3 of 9 frames, stopped early)",
                     "make the whole stream with: python -m rf.generate frames=9")  # fmt: skip


def test_evaluate_stop_keeps_the_finished_videos_and_the_same_command_goes_on(tmp_path):
    out = tmp_path / "eval"
    args = [*TINY_EVAL, f"out={out}"]
    r = interrupt(tmp_path, args, "after_video:1", signal.SIGTERM, module="rf.evaluate")
    assert r.returncode == 143, r.stdout[-3000:]
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert len(videos) == 1 and videos[0].endswith("-0.mp4") and not (out / "results.csv").exists()
    assert_stop_line(r.stdout, signal.SIGTERM, f"1 of 2 videos made in {out / 'videos'}", "python -m rf.evaluate")

    r = run_rf("evaluate", *args, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming: 1 of 2 videos already made" in r.stdout and (out / "results.csv").is_file()


def test_make_ode_pairs_stop_keeps_whole_shards_and_the_same_command_goes_on(tmp_path):
    out = tmp_path / "pairs"
    args = [*ODE, f"out={out}"]
    r = interrupt(tmp_path, args, "after_solve:3", signal.SIGINT, module="rf.make_ode_pairs")
    assert r.returncode == 130, r.stdout[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard_00000.safetensors"]
    assert_stop_line(r.stdout, signal.SIGINT, f"2 of 4 ODE pairs in {out}, 1 whole shards (a part shard of 1 pairs "
                     "was dropped)", "python -m rf.make_ode_pairs")  # fmt: skip

    r = run_rf("make_ode_pairs", *args, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{out}: 4 ODE pairs" in r.stdout


def test_encode_prompts_stop_keeps_whole_entries_and_the_same_command_goes_on(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a {c} circle moving fast to the left on a striped background"
                                  for c in ("red", "green", "blue")))  # fmt: skip
    args = [f"prompts={prompts}", "model=toy", "batch_size=1", f"cache={tmp_path / 'cache'}"]
    r = interrupt(tmp_path, args, "after_encode:1", signal.SIGTERM, module="rf.encode_prompts")
    assert r.returncode == 143, r.stdout[-3000:]
    entries = [p for p in files_under(tmp_path / "cache") if p.suffix == ".safetensors"]
    assert len(entries) == 1 and not list((tmp_path / "cache").rglob("*.tmp"))
    assert_stop_line(r.stdout, signal.SIGTERM, f"1 of 3 prompts encoded in {tmp_path / 'cache'}",
                     "python -m rf.encode_prompts")  # fmt: skip

    r = run_rf("encode_prompts", *args, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "encoded 2 prompts, 1 were cached" in r.stdout


def test_bench_stop_writes_the_variants_measured_and_says_so(tmp_path):
    out = tmp_path / "bench.json"
    r = interrupt(tmp_path, [*BENCH, f"out={out}"], "before_variant:2", signal.SIGINT, module="rf.bench")
    assert r.returncode == 130, r.stdout[-3000:]
    results = json.loads(out.read_text())
    assert list(results["variants"]) == ["plain", "static_cache"]
    assert results["stopped"] == "SIGINT after 2 of 4 variants"
    assert_stop_line(
        r.stdout, signal.SIGINT, f"{out} holds 2 of 4 variants", "measure them all with: python -m rf.bench"
    )
