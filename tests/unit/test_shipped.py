"""ckpt=shipped: the shipped toy weights are found, checked against their sha256, and streamed at their shift."""

import shutil

import pytest
from omegaconf import OmegaConf

from rf.toy import shipped
from rf.toy.shipped import SAMPLER_SHIFT, is_shipped, shipped_path, use_shipped


def test_is_shipped_reads_only_the_shipped_forms():
    assert is_shipped("shipped") and is_shipped("shipped:teacher")
    assert not is_shipped("runs/x/last.ckpt") and not is_shipped(None) and not is_shipped("shippedx")


def test_both_shipped_files_pass_their_sha256():
    assert shipped_path("shipped", "toy_large").name == "student.safetensors"
    assert shipped_path("shipped:teacher", "toy_large").name == "teacher.safetensors"


@pytest.mark.parametrize(
    ("ckpt", "model", "message"),
    [("shipped", "toy", "model=toy_large only"), ("shipped:critic", "toy_large", "shipped kinds are student, teacher")],
)
def test_other_models_and_kinds_are_refused(ckpt, model, message):
    with pytest.raises(ValueError, match=message):
        shipped_path(ckpt, model)


def test_a_damaged_file_is_refused(tmp_path, monkeypatch):
    for name in ("student.safetensors", "student.safetensors.sha256"):
        shutil.copy(shipped.WEIGHTS / name, tmp_path / name)
    with open(tmp_path / "student.safetensors", "r+b") as f:  # one flipped byte past the header
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(shipped, "WEIGHTS", tmp_path)
    with pytest.raises(ValueError, match="does not match its sha256"):
        shipped_path("shipped", "toy_large")


def test_use_shipped_sets_the_shift_the_student_was_distilled_for(capsys):
    cfg = OmegaConf.create({"ckpt": "shipped", "model": {"name": "toy_large"}, "sampler": {"shift": 5.0}})
    assert use_shipped(cfg).name == "student.safetensors"
    assert cfg.sampler.shift == SAMPLER_SHIFT
    assert f"sampler.shift={SAMPLER_SHIFT}" in capsys.readouterr().out
