"""rf.fast.in_place: which switches an earlier variant left in a shared model that a later one would need undone."""

from rf.fast.fast_path import FastPath
from rf.fast.in_place import applied_after, undone

CUDNN = {"compile": True, "graphs": True, "attention": "cudnn", "vae_channels_last": True}
BEST = {**CUDNN, "attention": "fa3", "vae_conv2d": True, "vae_subpixel": True, "norm_rope": True}


def held(*variants: dict) -> dict:
    applied = {}
    for switches in variants:
        applied = applied_after(applied, FastPath(**switches))
    return applied


def test_a_variant_with_every_switch_before_it_shares_the_model():
    assert undone({}, FastPath(**CUDNN)) == []
    assert undone(held({}, CUDNN), FastPath(**BEST)) == []  # cuDNN -> FlashAttention-3: the mark wins
    assert undone(held(CUDNN, BEST), FastPath(**BEST, overlap=True)) == []  # overlap is built per variant


def test_a_variant_without_an_earlier_one_way_switch_is_told_which():
    # variants=best's old order: the exact path after best_no_overlap kept FA3, the sub-pixel decoder and the kernel
    assert sorted(undone(held(CUDNN, BEST), FastPath(**CUDNN))) == [
        "attention=fa3", "norm_rope=true", "vae_conv2d=true", "vae_subpixel=true"]  # fmt: skip
    assert undone(held(CUDNN), FastPath(compile=True, graphs=True)) == ["vae_channels_last=true", "attention=cudnn"]
    assert undone(held({"compile": True}), FastPath(compile=True, autotune=True)) == ["autotune=false"]
    assert undone(held({"compile": True}), FastPath(compile=True, kernel_tuning=True)) == ["kernel_tuning=false"]
    assert undone(held({"compile": True, "kernel_tuning": True}), FastPath(compile=True, kernel_tuning=True)) == []
    assert undone(held({"fp8": True}), FastPath(fp8=True, fp8_weights="tensorwise")) == ["fp8_weights=rowwise"]


def test_another_decoder_does_not_need_the_wan_vae_undone():
    taehv = FastPath(compile=True, graphs=True, attention="cudnn", cache_pass="reuse", decoder="taehv")
    assert undone(held(CUDNN), taehv) == []
