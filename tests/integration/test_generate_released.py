"""`make generate ckpt=PATH/rewardforcing.pt`: Self Forcing / Reward Forcing release files stream as they are.

A release holds {"generator": sd, "generator_ema": sd} with Self Forcing's wrapper prefixes (`model.`,
`_fsdp_wrapped_module.`); here it is written for the toy model's size, and generate takes either weights.
"""

import torch
from omegaconf import OmegaConf

from rf.models.causal_wan import CausalWanTransformer3DModel
from rf.utils.video import read_video
from tests.cli import run_rf

CONF = OmegaConf.load("conf/model/toy.yaml")


def test_generate_streams_a_self_forcing_style_release(tmp_path):
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**OmegaConf.to_container(CONF.transformer))
    raw = model.state_dict()
    ema = {k: v * 0.5 for k, v in raw.items()}
    release = {
        "generator": {"model." + k: v for k, v in raw.items()},
        "generator_ema": {"model._fsdp_wrapped_module." + k: v for k, v in ema.items()},
    }
    torch.save(release, tmp_path / "rewardforcing.pt")
    videos = {}
    for use_ema in (False, True):
        out = tmp_path / f"ema_{use_ema}.mp4"
        r = run_rf("generate", f"ckpt={tmp_path / 'rewardforcing.pt'}", f"use_ema={str(use_ema).lower()}",
                   "seconds=1", f"out={out}", runs=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"({'generator_ema' if use_ema else 'generator'})" in r.stdout
        videos[use_ema] = read_video(out)[0]
    assert videos[False].shape == videos[True].shape
    assert not torch.equal(videos[False], videos[True])  # the EMA really was the other set of weights
