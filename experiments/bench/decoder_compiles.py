"""How many graphs the compiled Wan decoder compiles over three streams, with diffusers' upsampling forward or rf's
(rf.models.vae_forms.upsample3d_forward: the "Rep" cache marker tested by type), and its graph breaks in a steady chunk.
On the CPU, with the tiny test VAE and variants=best's decoder switches (experiments/bench/README.md, the ninth
session). The difference shows under torch 2.11, whose Dynamo breaks the graph on diffusers' tensor-vs-string test;
torch 2.13 traces both forms.

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) python experiments/bench/decoder_compiles.py diffusers|typed
"""

import sys
import time

import torch
import torch._dynamo.utils
from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample

from rf.models.vae import WanVideoAutoencoder
from rf.models.vae_forms import use_upsample3d_forward
from tests.unit.test_fast_path import tiny_wan_vae

SWITCHES = {
    "channels_last": True,
    "conv2d": True,
    "whole_chunk": True,
    "stack_taps": True,
    "subpixel": True,
    "conv3d_from": 32,
}  # variants=best's decoder switches, the 3-D threshold at the tiny VAE's widths


def decoder_with(form: str, compile: bool) -> WanVideoAutoencoder:
    """The tiny Wan VAE with the switches, its upsampling blocks on `form`'s forward."""
    torch.manual_seed(0)
    vae = WanVideoAutoencoder(tiny_wan_vae().eval())
    vae.speed_up(compile=compile, **SWITCHES)  # compile installs upsample3d_forward
    if form == "typed":
        use_upsample3d_forward(vae.vae.decoder)
    else:  # diffusers' own forward back in place
        for module in vae.vae.decoder.modules():
            if isinstance(module, WanResample):
                module.__dict__.pop("forward", None)
    return vae


def main() -> None:
    form = sys.argv[1] if len(sys.argv) > 1 else "typed"
    if form not in ("diffusers", "typed"):
        raise SystemExit(f"form={form!r}: diffusers or typed")
    latents = torch.randn(1, 16, 3 * 5, 8, 8, generator=torch.Generator().manual_seed(0))  # 5 chunks of 3 frames
    with torch.no_grad():
        vae = decoder_with(form, compile=False)  # the graph breaks, on the decoder as Dynamo would trace it
        cache, pieces = (
            [None] * vae.stream_decoder().num_convs,
            (latents[:, :, :1], latents[:, :, 1:3], latents[:, :, 3:6]),
        )
        breaks = [torch._dynamo.explain(vae.vae.decoder)(p, feat_cache=cache, feat_idx=[0], first_chunk=i == 0)
                  for i, p in enumerate(pieces)]  # fmt: skip
        print(f"torch {torch.__version__}, {form}: graph breaks in the first frame, the first chunk, a steady chunk: "
              f"{[e.graph_break_count for e in breaks]}")  # fmt: skip
        torch._dynamo.reset()
        decoder = decoder_with(form, compile=True).stream_decoder()
        for stream in range(3):
            decoder.reset()
            before, t0 = torch._dynamo.utils.counters["stats"]["unique_graphs"], time.perf_counter()
            for i in range(5):
                chunk = latents[:, :, 3 * i : 3 * i + 3]
                for piece in [chunk[:, :, :1], chunk[:, :, 1:]] if i == 0 else [chunk]:  # the bench's first frame
                    decoder.decode(piece)
            compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
            print(f"torch {torch.__version__}, {form}: stream {stream}, {compiled} graphs compiled, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
