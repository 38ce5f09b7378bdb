"""The configurations profile_chunk.py profiles, by name: `--dit NAME,...` picks from DIT (the student's fast switches,
rf.fast.fast_path.FastPath's keys) and `--vae NAME,...` from VAE (the Wan decoder's speed_up switches,
rf.models.vae.speed_up). Each name spells the switches it adds to the one before it; the comments say which session's
variant each one is. CUDA graphs are off unless a name says `graphs` (profile_chunk.py's doc says why).
"""

EXACT = {"compile": True, "static_cache": True, "attention": "cudnn"}
APPROX = {**EXACT, "attention": "fa3", "compile_commit": True, "kv_in_place": True, "cache_pass": "reuse"}
EXACT_FA3_KV = {**EXACT, "attention": "fa3", "kv_in_place": True}
CALIBRATED = {**APPROX, "fp8": True, "fp8_scales": "calibrated"}
BEST_DIT = {**EXACT_FA3_KV, "compile_commit": True, "norm_rope": True, "gelu_epilogue": True}  # the eleventh session's
FP8_FIXED = {"fp8": True, "fp8_scales": "calibrated", "fp8_weights": "tensorwise"}  # no reduction, tensorwise matmuls
DIT = {  # name -> fast switches (graphs off: see the module doc); profiled in this order
    "exact": EXACT,
    "exact_fused_pass": {**EXACT, "cache_pass": "fused"},
    "fp8": {**EXACT, "fp8": True},
    "exact_fuse_qkv": {**EXACT, "fuse_qkv": True},
    "exact_fa3": {**EXACT, "attention": "fa3"},  # FlashAttention-3 (rf.fast.fa3; pip install fa3-fwd)
    "exact_fa3_autotune": {**EXACT, "attention": "fa3", "autotune": True},  # and Inductor's max-autotune
    "exact_fa3_commit": {**EXACT, "attention": "fa3", "compile_commit": True},  # and the cache's commit compiled
    "exact_fa3_kv": EXACT_FA3_KV,  # each pass's K/V written after the context
    "exact_fa3_kv_commit": {**EXACT_FA3_KV, "compile_commit": True},  # variants=best's DiT (its graphs aside)
    "exact_fa3_kv_commit_norm_rope": {**EXACT_FA3_KV, "compile_commit": True, "norm_rope": True},  # rf.fast.norm_rope
    # and the FFN's GELU in its up-projection's cuBLASLt epilogue (rf.fast.epilogue), without and with the kernel
    "exact_fa3_kv_commit_gelu": {**EXACT_FA3_KV, "compile_commit": True, "gelu_epilogue": True},
    "exact_fa3_kv_commit_norm_rope_gelu": BEST_DIT,
    # and Inductor's Triton kernels (layer norms, modulation, residual sums) with coordinate-descent tuned tiles
    "exact_fa3_kv_commit_norm_rope_gelu_tuned": {**BEST_DIT, "kernel_tuning": True},
    # and each block's layer norms with their residual sums and modulation in one Triton kernel each
    "exact_fa3_kv_commit_norm_rope_gelu_block_norms": {**BEST_DIT, "block_norms": True},
    # and the static cache's commit (EMA-Sink fuse, slot writes, re-rotation) as one Triton kernel a block
    "exact_fa3_kv_commit_norm_rope_gelu_block_norms_commit_kernel": {
        **BEST_DIT,
        "block_norms": True,
        "commit_kernel": True,
    },
    # variants=best's DiT with its CUDA graphs (the kernels run from graph replays), and either with Inductor's
    # Programmatic Dependent Launch (pdl: its Triton kernels start while the kernel before them ends; Hopper)
    "exact_fa3_kv_commit_graphs": {**EXACT_FA3_KV, "compile_commit": True, "graphs": True},
    "exact_fa3_kv_commit_pdl": {**EXACT_FA3_KV, "compile_commit": True, "pdl": True},
    "exact_fa3_kv_commit_graphs_pdl": {**EXACT_FA3_KV, "compile_commit": True, "graphs": True, "pdl": True},
    # the approximate path's DiT on the exact path's fastest switches: the last pass's K/V reused (no cache pass), in
    # bf16 and with FP8 matmuls (where does FP8 not pay?); with sampler.denoising_steps=[1000,667,333]: variants=steps
    "approx_fa3_reuse": APPROX,
    "approx_fa3_reuse_fp8": {**APPROX, "fp8": True},
    "approx_fa3_reuse_fp8_tensorwise": {**APPROX, "fp8": True, "fp8_scales": "tensorwise"},  # one scale per input
    # one scale per input fixed by a calibration stream (no reduction at run time), the weights per row or per tensor
    "approx_fa3_reuse_fp8_calibrated": CALIBRATED,
    "approx_fa3_reuse_fp8_calibrated_tw": {**APPROX, **FP8_FIXED},
    # the same FP8 on the exact path's DiT (clean cache pass): FP8 against bf16 per chunk, issue 17's 1.4x
    "exact_fa3_kv_fp8_calibrated_tw": {**EXACT_FA3_KV, **FP8_FIXED},
    "exact_flash": {**EXACT, "attention": None},  # PyTorch's pick (flash): is cuDNN attention used in the stream?
    "exact_fused_pass_fuse_qkv": {**EXACT, "cache_pass": "fused", "fuse_qkv": True},
    "fp8_fuse_qkv": {**EXACT, "fp8": True, "fuse_qkv": True},
}
VAE_EXACT = {"channels_last": True, "compile": True, "conv2d": True}
TAPS = {**VAE_EXACT, "whole_chunk": True, "stack_taps": True}  # variants=best's decoder before the seventh session
SUBPIXEL = {**TAPS, "subpixel": True}
SUBPIXEL_3D96 = {**SUBPIXEL, "conv3d_from": 96, "cudnn_benchmark": True}
VAE = {  # name -> the Wan VAE's speed_up switches
    "exact": VAE_EXACT,
    "exact_whole_chunk": {**VAE_EXACT, "whole_chunk": True},
    "conv3d": {"channels_last": True, "compile": True},  # cuDNN's 3-D convolutions, no stacking copies
    "conv3d_whole_chunk": {"channels_last": True, "compile": True, "whole_chunk": True},
    # and the RGB head with its taps stacked along the outputs (fast.vae_stack_taps, rf.models.vae_forms.taps_then_sum)
    "exact_whole_chunk_taps": TAPS,
    # and the upsampling convolutions as 2x2 convolutions of the frames (fast.vae_subpixel, SubpixelUpsample)
    "exact_whole_chunk_taps_subpixel": SUBPIXEL,
    # and the convolutions with 192 input channels or more as cuDNN 3-D convolutions (fast.vae_conv3d_from=192,
    # rf.models.vae_forms.causal_conv3d), cuDNN's algorithms timed (fast.cudnn_benchmark)
    "exact_whole_chunk_taps_subpixel_3d192": {**SUBPIXEL, "conv3d_from": 192, "cudnn_benchmark": True},
    # and from 96 channels: variants=best's decoder since results/bench_vae_convs.json (results/profile_vae_layout.md)
    "exact_whole_chunk_taps_subpixel_3d96": SUBPIXEL_3D96,
    # and the 96-channel 3-D convolutions computed with 128 filters, 32 of them zero (fast.vae_min_out=128)
    "exact_whole_chunk_taps_subpixel_3d96_min128": {**SUBPIXEL_3D96, "min_out": 128},
    # and each residual block's norms, SiLUs and causal padding in one Triton kernel (fast.vae_norm_silu)
    "exact_whole_chunk_taps_subpixel_3d96_min128_norm": {**SUBPIXEL_3D96, "min_out": 128, "norm_silu": True},
    # and the RGB head's norm, SiLU and causal padding in that kernel too (fast.vae_head_norm)
    "exact_whole_chunk_taps_subpixel_3d96_min128_norm_head": {
        **SUBPIXEL_3D96,
        "min_out": 128,
        "norm_silu": True,
        "head_norm": True,
    },
}
