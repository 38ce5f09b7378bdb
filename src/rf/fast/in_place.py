"""What the fast path's switches leave in a model and its VAE that a later FastPath cannot take back.

`FastPath.prepare_model` and `prepare_decoder` work in place: they compile the blocks, swap layers (FP8, the GELU
epilogue, the fused q/k/v projection), mark attention modules (FlashAttention-3, norm_rope), convert and re-route the
decoder's convolutions. None of that is undone by a later call without the switch. rf.bench measures its variants on
one model and one VAE (compiling them once serves every variant), so a variant listed after one that applied such a
switch would run with it anyway: `exact` after `best_no_overlap` in variants=best kept FlashAttention-3 and the
sub-pixel decoder. The bench asks `undone` before each variant and builds a fresh model where the answer is not
empty.

    applied = {}
    for fast in variants:
        if undone(applied, fast):   # e.g. ["attention=fa3", "vae_subpixel=true"]
            ...a fresh model and VAE; applied = {}
        applied = applied_after(applied, fast)
"""

from __future__ import annotations

# boolean switches whose prepare call changes the model or the VAE for good
ONE_WAY = ("compile", "fuse_qkv", "norm_rope", "block_norms", "gelu_epilogue", "fp8", "vae_channels_last", "vae_conv2d",
           "vae_compile", "vae_subpixel")  # fmt: skip
COMPILE_MODES = ("autotune", "kernel_tuning")  # how the blocks were compiled: fixed at their first compile


def applied_after(applied: dict, fast) -> dict:
    """The one-way settings a model holds after `applied` and then `fast`'s prepare calls (fast: a FastPath)."""
    out = dict(applied)
    for switch in ONE_WAY:
        out[switch] = out.get(switch, False) or getattr(fast, switch)
    if fast.attention is not None and out.get("attention") != "fa3":  # FlashAttention-3's mark outlives a backend
        out["attention"] = fast.attention
    for switch in COMPILE_MODES:  # compiled blocks keep the mode and options of their first compile
        if fast.compile and switch not in out:
            out[switch] = getattr(fast, switch)
    if fast.fp8 and "fp8_weights" not in out:  # FP8 weights are quantised once
        out["fp8_weights"] = fast.fp8_weights
    return out


def undone(applied: dict, fast) -> list[str]:
    """The settings in `applied` that `fast` would need taken back, as `switch=value`; empty: it can share the model."""
    # the Wan VAE's switches matter only to a variant that decodes with it (another decoder is built anew)
    kept = [s for s in ONE_WAY if fast.decoder == "wan" or not s.startswith("vae_")]
    out = [f"{switch}=true" for switch in kept if applied.get(switch) and not getattr(fast, switch)]
    attention = applied.get("attention")
    if attention is not None and fast.attention != attention and (attention == "fa3" or fast.attention is None):
        out.append(f"attention={attention}")  # another backend replaces a backend; nothing replaces FA3's mark
    for switch in COMPILE_MODES:
        if fast.compile and applied.get(switch, getattr(fast, switch)) != getattr(fast, switch):
            out.append(f"{switch}={str(applied[switch]).lower()}")
    if fast.fp8 and applied.get("fp8_weights", fast.fp8_weights) != fast.fp8_weights:
        out.append(f"fp8_weights={applied['fp8_weights']}")
    return out
