"""Hydra multirun: one `-m` command trains every point of a sweep, each in its own resumable folder."""

import torch

from tests.cli import run_rf, write_tiny_re_dmd


def test_sweep_over_beta_and_sink_puts_each_point_in_its_own_folder(tmp_path):
    # a user's own experiment file next to rf's configs (--config-dir): the toy Re-DMD at test size, 2 iterations
    tiny = write_tiny_re_dmd(tmp_path, "tiny_re_dmd", module={"max_iterations": 2})
    sweep = ["method.beta=0.5,1", "sink=sink,ema_sink", "~callbacks.video_log"]
    r = run_rf("train", "-m", *tiny, *sweep, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpts = sorted((tmp_path / "toy_re_dmd").glob("*/checkpoints/last.ckpt"))
    names = [p.parts[-3] for p in ckpts]
    assert len(ckpts) == 4, names
    assert "method.beta=1,sink=ema_sink" in names, names
    for p in ckpts:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        assert ckpt["rf_loop"]["micro_step"] == 2
        assert ckpt["callbacks"]["EMASink"]["config"]["policy"] == p.parts[-3].split("sink=")[1]
