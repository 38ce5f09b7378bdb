"""FSDP2 (trainer=fsdp2, Lightning's ModelParallelStrategy) on the CPU: torchrun with gloo, as a GPU job runs.

Two processes shard student, critic and teacher (rf.lit.parallel); the checkpoint is one full file, and a
relaunch on one process continues it with the same iteration counter and optimiser state.
"""

import torch

from tests.cli import run_rf, write_tiny_re_dmd

# The tiny toy Re-DMD (tests.cli) with 2 blocks and 2 chunks; module.max_iterations comes with each command.
TINY = dict(
    model={"transformer": {"num_layers": 2}},
    module={"latent_frames": 6, "activation_checkpointing": True},  # recomputation inside FSDP2 units, as at full size
    callbacks={"generator_ema": {"start_iteration": 0}},
)


def test_fsdp2_two_processes_then_resume_on_one(tmp_path):
    args = [*write_tiny_re_dmd(tmp_path, **TINY), "trainer=fsdp2", "trainer.accelerator=cpu", "~callbacks.video_log"]
    r = run_rf("train", *args, "module.max_iterations=3", runs=tmp_path, processes=2, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    last = tmp_path / "toy_re_dmd" / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=False)
    assert first["rf_loop"]["micro_step"] == 3 and first["rf_loop"]["critic_steps"] == 3
    weights = first["state_dict"]
    assert weights["generator.blocks.0.attn1.to_q.weight"].shape == (64, 64)  # whole tensors, not shards
    assert not any(k.startswith("teacher.") for k in weights)
    steps = [s["step"] for s in first["optimizer_states"][1]["state"].values()]
    assert steps and all(float(s) == 3 for s in steps)  # the critic's Adam state, gathered
    ema = first["callbacks"]["GeneratorEMA"]
    assert ema["updates"] == 1 and ema["shadow"]["blocks.0.attn1.to_q.weight"].shape == (64, 64)

    r = run_rf("train", *args, "module.max_iterations=6", runs=tmp_path, processes=1, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stdout
    second = torch.load(last, map_location="cpu", weights_only=False)
    assert second["rf_loop"]["micro_step"] == 6 and second["rf_loop"]["critic_steps"] == 6
    steps = [s["step"] for s in second["optimizer_states"][1]["state"].values()]
    assert all(float(s) == 6 for s in steps)  # Adam continued from 3, not restarted
    assert second["callbacks"]["GeneratorEMA"]["updates"] == 2  # iteration 5 stepped the generator and its EMA
    moved = (second["state_dict"]["critic.proj_out.weight"] - weights["critic.proj_out.weight"]).abs().max()
    assert moved > 0
