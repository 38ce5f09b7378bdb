"""rf.lit.memory: the per-GPU floor of a distillation run, against the measured full-size step, and the refusal."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from rf.lit.memory import ACTIVATIONS_GIB, GIB, check_fits, parameters, state_bytes
from rf.utils.cli import CONF_DIR

CONF = Path(CONF_DIR)

WAN_1_3B = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "wan_1_3b.yaml").transformer)
WAN_14B = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "wan_14b.yaml").transformer)
H100 = 79.1 * GIB  # what torch reports for an H100 80GB HBM3


def test_parameter_counts_are_the_published_sizes():
    assert parameters(WAN_1_3B) == 1_418_996_800
    assert 14.28e9 < parameters(WAN_14B) < 14.30e9


def test_the_floor_is_under_the_measured_full_size_peaks():
    """experiments/multi_gpu: the 1.3B student, critic and bf16 teacher peaked at 58.8 GiB on 1 GPU and 39.0 on 2."""
    p = parameters(WAN_1_3B)
    states = state_bytes(p, p, p, "bf16")
    assert states == 38 * p  # (20 + 16 + 2) bytes per parameter
    for gpus, peak in ((1, 58.8), (2, 39.0)):
        assert states / gpus / GIB < peak <= states / gpus / GIB + ACTIVATIONS_GIB + 0.1


def test_the_floor_is_under_the_measured_14b_peaks():
    """experiments/multi_gpu: the paper's recipe (14B bf16 teacher, random weights) peaked at 54.7 GiB on 2 H100s
    and 38.7 on 4. The floor must stay under both, and leave the larger teacher's own activations out."""
    p_s, p_t = parameters(WAN_1_3B), parameters(WAN_14B)
    states = state_bytes(p_s, p_s, p_t, "bf16")
    for gpus, peak in ((2, 54.7), (4, 38.7)):
        floor = states / gpus / GIB + ACTIVATIONS_GIB
        assert floor < peak < floor + 8  # 14B blocks gathered and its activations: 3.7 and 6.3 GiB above the floor


def test_the_paper_recipe_is_refused_on_one_gpu_and_passes_on_two():
    with pytest.raises(ValueError, match=r"needs about 88 GiB per GPU on 1 GPU .* launch on at least 2 GPUs"):
        check_fits(WAN_1_3B, WAN_14B, "bf16", 1, H100, "NVIDIA H100 80GB HBM3")
    check_fits(WAN_1_3B, WAN_14B, "bf16", 2, H100, "NVIDIA H100 80GB HBM3")  # 51 GiB: the floor fits


def test_train_stops_before_building_a_model(monkeypatch):
    """rf.train's check reads the composed config, the world size and the card, and refuses in one line."""
    from rf import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    card = SimpleNamespace(total_memory=int(H100), name="NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: card)
    monkeypatch.setenv("WORLD_SIZE", "1")
    cfg = OmegaConf.create({
        "trainer": {"accelerator": "gpu"}, "model": {"transformer": WAN_1_3B},
        "module": {"_target_": "rf.lit.distill.DistillModule", "teacher_arch": WAN_14B, "teacher_dtype": "bf16"},
    })  # fmt: skip
    with pytest.raises(ValueError, match="launch on at least 2 GPUs"):
        train.check_memory(cfg)
    monkeypatch.setenv("WORLD_SIZE", "2")
    train.check_memory(cfg)
