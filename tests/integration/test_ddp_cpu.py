"""trainer=ddp_cpu: toy Re-DMD in 2 processes (torchrun, DDP over gloo) trains as 1 process with the doubled batch.

Each process takes batch 1 of every global batch of 2; every sample's noise and noise level come from its
global index in the prompt stream, and Re-DMD's weights are computed over the global batch (here
`method.normalize=true`, which divides by the global mean weight). So the rewards of each sample, its
weight, the generator, the critic and the generator EMA equal those of one process with batch 2, up to
float rounding. A helper callback (written next to the run, imported by Hydra) dumps what each rank
holds at the end of training and records which ranks opened a video writer or wrote a metrics row.
"""

import torch

from rf.diffusion.sampler import SampleNoise
from tests.cli import run_rf, write_tiny_re_dmd

# The tiny toy Re-DMD (tests.cli); data.batch_size comes with each command (1 per process, or 2 in one).
TINY = dict(
    module={"max_iterations": 4, "generator_every": 2},  # 2 generator steps and 4 critic steps
    method={"normalize": True},  # weights / their global-batch mean: needs the rewards of every rank
    optim={"lr_generator": 1.0e-3, "lr_critic": 1.0e-3},  # steps large enough to see
    trainer={"log_every_n_steps": 1},
    checkpoint_every=100,
    callbacks={
        "generator_ema": {"start_iteration": 0},
        "video_log": {
            "every_n_iterations": 2,
            "latent_frames": 3,
            "prompts": ["a red circle moving fast to the right on a striped background"],
        },
    },
)

# What each rank holds when training ends, and which rank wrote videos and metrics.
RANK_DUMP = """
import lightning as L
import torch
from lightning.fabric.loggers.csv_logs import _ExperimentWriter

import rf.callbacks.video_log as video_log


class RankDump(L.Callback):
    def __init__(self, out):
        self.out, self.rewards, self.weights, self.writes = out, {}, {}, []

    def setup(self, trainer, module, stage):
        reward = next(c for c in trainer.callbacks if type(c).__name__ == "RewardCallback")
        rewards, weights = reward.rollout_rewards, module.weights

        def scored(module, latents, prompts):
            r = rewards(module, latents, prompts)  # [W B]: every rank's rewards, rank order
            b, rank = len(self.index), trainer.global_rank
            self.rewards.update(zip(self.index, r[rank * b : (rank + 1) * b].tolist(), strict=True))
            return r

        def weighted(x, prompts):
            w = weights(x, prompts)
            self.weights.update(zip(self.index, w.tolist(), strict=True))
            return w

        reward.rollout_rewards, module.weights = scored, weighted
        self.start = {k: v.clone() for k, v in module.generator.state_dict().items()}
        writer, log_metrics, writes = video_log.StreamingVideoWriter, _ExperimentWriter.log_metrics, self.writes

        class RecordedWriter(writer):
            def __init__(self, path, *args, **kwargs):
                writes.append(("video", str(path)))
                super().__init__(path, *args, **kwargs)

        def recorded_log_metrics(writer_self, *args, **kwargs):
            writes.append(("metrics", None))
            return log_metrics(writer_self, *args, **kwargs)

        video_log.StreamingVideoWriter = RecordedWriter
        _ExperimentWriter.log_metrics = recorded_log_metrics

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.index = [int(i) for i in batch["index"]]

    def on_train_end(self, trainer, module):
        ema = next(c for c in trainer.callbacks if type(c).__name__ == "GeneratorEMA")
        reward = next(c for c in trainer.callbacks if type(c).__name__ == "RewardCallback")
        torch.save({
            "reward_stats": reward.state_dict(),
            "start": self.start, "generator": module.generator.state_dict(), "critic": module.critic.state_dict(),
            "ema": ema.shadow, "rewards": self.rewards, "weights": self.weights, "writes": self.writes,
            "loop": (module.micro_step, module.generator_steps, module.critic_steps, module.dropped_samples),
        }, f"{self.out}/rank{trainer.global_rank}.pt")
"""


def dump_callback(out) -> str:
    return f"+callbacks.rank_dump={{_target_: rank_dump.RankDump, out: {out}}}"


def test_two_processes_with_batch_one_train_as_one_process_with_batch_two(tmp_path):
    tiny = write_tiny_re_dmd(tmp_path, **TINY)
    (tmp_path / "rank_dump.py").write_text(RANK_DUMP)  # the runs' cwd, so Hydra imports it
    (tmp_path / "ddp").mkdir()
    (tmp_path / "single").mkdir()

    r = run_rf("train", *tiny, "trainer=ddp_cpu", "data.batch_size=1", "name=ddp",
               dump_callback(tmp_path / "ddp"), runs=tmp_path, processes=2)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("run folder:") == 1  # rank 0 speaks for both
    r = run_rf("train", *tiny, "data.batch_size=2", "name=single", dump_callback(tmp_path / "single"), runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{i}.pt", weights_only=False) for i in (0, 1))
    single = torch.load(tmp_path / "single" / "rank0.pt", weights_only=False)

    # the ranks agree exactly: DDP averaged the gradients, the EMA follows the synced generator
    for part in ("generator", "critic", "ema"):
        assert rank0[part].keys() == rank1[part].keys() == single[part].keys()
        for name in rank0[part]:
            assert torch.equal(rank0[part][name], rank1[part][name]), (part, name)
            torch.testing.assert_close(rank0[part][name], single[part][name], rtol=0, atol=3e-4, msg=(part, name))
    moved = max((rank0["generator"][k] - rank0["start"][k]).abs().max() for k in rank0["start"])
    assert moved > 2e-3  # several times the tolerance: the comparison above compares trained weights
    assert rank0["loop"] == rank1["loop"] == single["loop"] == (4, 2, 4, 0)

    # each rank scored its own samples (0, 2 on rank 0; 1, 3 on rank 1 for the 2 generator iterations)
    assert sorted(rank0["rewards"]) == [0, 4] and sorted(rank1["rewards"]) == [1, 5]
    assert sorted(single["rewards"]) == [0, 1, 4, 5]
    for i in single["rewards"]:
        rank = rank0 if i in rank0["rewards"] else rank1
        assert abs(rank["rewards"][i] - single["rewards"][i]) < 1e-3 * max(1.0, abs(single["rewards"][i]))
        assert abs(rank["weights"][i] - single["weights"][i]) < 1e-3  # normalised over the global batch
    assert abs(rank0["weights"][0] + rank1["weights"][1] - 2.0) < 1e-5  # normalize: the global mean weight is 1
    # the reward's running statistics (saved by rank 0) are taken over both ranks' rewards, as one process's are
    assert rank0["reward_stats"] == rank1["reward_stats"]
    assert rank0["reward_stats"]["count"] == single["reward_stats"]["count"] == 4
    assert abs(rank0["reward_stats"]["mean"] - single["reward_stats"]["mean"]) < 1e-3

    # only rank 0 wrote videos and metrics
    assert rank1["writes"] == []
    assert {kind for kind, _ in rank0["writes"]} == {"video", "metrics"}
    videos = sorted(p.name for p in (tmp_path / "ddp" / "videos").glob("*.mp4"))
    assert videos == ["iter_000002.mp4", "iter_000004.mp4"]
    assert [p.name for p in (tmp_path / "ddp" / "logs").iterdir()] == ["version_0"]
    assert not list((tmp_path / "ddp" / "checkpoints").glob(".*tmp*"))


def test_ddp_cpu_without_torchrun_is_refused_with_the_command(tmp_path):
    """rf.train never spawns processes itself (Lightning's re-launch breaks Hydra -m): it names the launcher."""
    r = run_rf("train", "experiment=toy_re_dmd", "trainer=ddp_cpu", runs=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: trainer.devices=2: start the 2 processes with `torchrun --nproc-per-node 2 -m rf.train ...` "
        "(or srun); rf.train does not spawn them itself"
    ]
    assert not any(tmp_path.iterdir())  # not even Hydra's run folder


def test_a_samples_noise_does_not_depend_on_the_batch_around_it():
    """SampleNoise, the noise source of Re-DMD rollouts: sample 12 draws the same in a batch of 2 or alone."""
    like = torch.empty(2, 4, 3, 2, 2)
    pair, alone = SampleNoise([11, 12]), SampleNoise([12])
    for chunk in range(2):
        assert torch.equal(pair.initial(chunk, like)[1], alone.initial(chunk, like[:1])[0])
        assert torch.equal(pair.renoise(chunk, 0, like)[1], alone.renoise(chunk, 0, like[:1])[0])
    noise = pair.initial(2, like)
    assert not torch.equal(noise[0], noise[1])  # and two samples draw different noise
