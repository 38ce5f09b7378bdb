"""Interrupted Re-DMD runs lose nothing: after SIGTERM or SIGKILL, the same command finishes the run exactly.

A tiny toy Re-DMD run (checkpoint every 2 iterations) is stopped at a chosen point and relaunched with
the same command; its final generator, critic, optimiser states and generator EMA must equal those of
an uninterrupted run. The stop points are deterministic: `interrupt.py` (below, written next to the run)
runs `rf.train` in-process with one hook that, at the chosen point, writes a marker file and waits; the
test polls for the marker and sends the signal from outside, as a scheduler or the OOM killer would.

    mid_iteration:K   in micro step K, after the generator's step and the critic's backward, before
                      the critic's step: the process holds a half-done iteration
    in_save:N         the N-th checkpoint write has put half of its bytes on disk
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.cli import run_rf, write_tiny_re_dmd

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

point, n = os.environ["RF_TEST_PAUSE"].split(":")
n, marker = int(n), Path(os.environ["RF_TEST_MARKER"])


def pause(until=lambda: False):
    marker.write_text(str(os.getpid()))
    while not until():
        time.sleep(0.01)


if point == "mid_iteration":
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
sys.argv = ["rf.train", *sys.argv[1:]]
runpy.run_module("rf.train", run_name="__main__", alter_sys=True)
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


def interrupt(path, args, pause: str, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Run `rf.train args` until the pause point, send `sig`, wait for the process to end."""
    (path / "interrupt.py").write_text(INTERRUPT)
    marker = path / "paused"
    env = {**os.environ, "RF_RUNS": str(path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2",
           "RF_TEST_PAUSE": pause, "RF_TEST_MARKER": str(marker)}  # fmt: skip
    log = open(path / "interrupted.log", "w+")  # a file, not a pipe: a full pipe would block the run
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
        # iteration's generator step), and the process exits with status 0
        pytest.param(signal.SIGTERM, 5, id="SIGTERM"),
        pytest.param(signal.SIGKILL, 4, id="SIGKILL"),  # nothing of iteration 5 survives: last.ckpt is iteration 4's
    ],
)
def test_signal_mid_iteration_then_the_same_command_finishes_the_run_exactly(tmp_path, uninterrupted, sig, saved_at):
    args = setup_run(tmp_path)
    last = tmp_path / "toy_re_dmd" / "checkpoints" / "last.ckpt"
    r = interrupt(tmp_path, args, "mid_iteration:4", sig)  # micro step 4: iteration 5, a generator iteration
    assert r.returncode == (0 if sig == signal.SIGTERM else -signal.SIGKILL), r.stdout[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["rf_loop"]["micro_step"] == saved_at

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
