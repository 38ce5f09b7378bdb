"""Hydra multirun: one `-m` command trains every point of a sweep, each in its own resumable folder."""

import torch

from tests.cli import run_rf

# A user's own experiment file, next to rf's configs through --config-dir: the toy Re-DMD run at test size.
TINY_EXPERIMENT = """# @package _global_
defaults:
  - toy_re_dmd
model:
  video: {height: 16, width: 16}
  transformer: {num_layers: 1, ffn_dim: 64, num_attention_heads: 2}
module:
  teacher_ckpt: null
  student_ckpt: null
  latent_frames: 3
  max_iterations: 2
data:
  batch_size: 1
logger:
  tensorboard: false
"""


def test_sweep_over_beta_and_sink_puts_each_point_in_its_own_folder(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "tiny_re_dmd.yaml").write_text(TINY_EXPERIMENT)
    sweep = ["-m", "experiment=tiny_re_dmd", "method.beta=0.5,1", "sink=sink,ema_sink", "~callbacks.video_log"]
    r = run_rf("train", f"--config-dir={tmp_path / 'conf'}", *sweep, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpts = sorted((tmp_path / "toy_re_dmd").glob("*/checkpoints/last.ckpt"))
    names = [p.parts[-3] for p in ckpts]
    assert len(ckpts) == 4, names
    assert "method.beta=1,sink=ema_sink" in names, names
    for p in ckpts:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        assert ckpt["rf_loop"]["micro_step"] == 2
        assert ckpt["callbacks"]["EMASink"]["config"]["policy"] == p.parts[-3].split("sink=")[1]
