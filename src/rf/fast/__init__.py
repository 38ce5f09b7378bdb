"""The fast path: speed switches for streaming inference, each its own file, all chosen by one FastPath.

    fast_path.py     FastPath: every switch in one frozen dataclass, applied to the model, the sampler and
                     the decoder (what `fast=plain | exact | approximate` and `make bench` turn on)
    compile.py       torch.compile each causal block
    static_cache.py  StaticKVCache: the bounded cache policies in preallocated buffers, a ring-buffer window
    graphs.py        CudaGraphModel: one CUDA graph per (cache stage, pass kind), over the static cache
    overlap.py       OverlappedDecoder: decode chunk i on a second CUDA stream while chunk i+1 denoises
    fp8.py           FP8 matmuls in the blocks' Linear layers (Hopper; an approximation)
    fa3.py           FlashAttention-3's forward kernel for the DiT's attention (Hopper; pip install fa3-fwd)
    epilogue.py      the FFN's bias and GELU in its up-projection's cuBLASLt epilogue
    norm_rope.py     the self-attention's q/k RMS norms and RoPE as one Triton kernel
    vae_norm.py      the Wan decoder's RMS norm, SiLU and causal time padding as one Triton kernel
    taehv.py         TAEHV, the tiny approximate decoder that can stand in for the Wan VAE
    timing.py        the bench's measuring half: the CUDA-event clock, a timed stream, latency windows, roofline
    recompiles.py    RecompileLimitWatch: which bench variant ran part of its compiled code eagerly

The plain path needs none of this: rf.models holds the model, its cache, loading, text and VAE.
"""
