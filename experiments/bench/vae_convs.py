"""Each convolution of the Wan VAE decoder timed in every exact form, at a steady streaming chunk's shapes.

    python experiments/bench/vae_convs.py OUTDIR [--height 480 --width 832]      (one GPU)

The decoder (published architecture, random weights, bf16, channels-last weights) decodes a stream's first latent
frame and two whole 3-latent-frame chunks; the third chunk's convolution inputs (with their causal caches) are
recorded, and every convolution is timed alone (CUDA events, median of 20 after 3 warm calls, cuDNN benchmark on):

causal 3-D convolutions (WanCausalConv3d: 27-tap resblock convolutions, the 3-tap time upsampling):
  conv2d     rf.models.vae_forms.causal_conv_as_2d, eager: the cache concatenated, the frames stacked, one 2-D
             convolution
  conv3d     diffusers' forward: the cache concatenated, F.pad, cuDNN's 3-D convolution
  conv3d_pad the cache concatenated, the spatial padding inside cuDNN's 3-D convolution (no pad copy)
  *_kernel   the convolution kernel alone on its prepared input: what is left with every copy fused away
2-D upsampling convolutions (nearest 2x, then 3x3):
  upsample   diffusers' resample: the 4x larger upsampled frames, then the 3x3 convolution
  subpixel   rf.models.vae_forms.subpixel_upsample_conv: four 2x2 convolutions of the frames themselves, interleaved

Eager timings overstate the copies that Inductor fuses into the norms before them; the `_kernel` columns bound
that. Writes OUTDIR/vae_convs.json and OUTDIR/vae_convs.md.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample

from rf.fast.timing import median_seconds
from rf.models.vae import WanVideoAutoencoder
from rf.models.vae_forms import causal_conv3d, causal_conv_as_2d, causal_frames, subpixel_upsample_conv


def timed(fn, repeats: int = 20) -> float:
    """Median milliseconds of fn() over `repeats` calls after 3 warm ones (CUDA events; on a CPU the host clock)."""
    return 1e3 * median_seconds(fn, repeats=repeats, warm=3)


def time_causal(conv: WanCausalConv3d, x: torch.Tensor, cache_x: torch.Tensor | None) -> dict:
    row = {
        "conv2d": timed(lambda: causal_conv_as_2d(conv, x, cache_x)),
        "conv3d": timed(lambda: WanCausalConv3d.forward(conv, x, cache_x)),
        "conv3d_pad": timed(lambda: causal_conv3d(conv, x, cache_x)),
    }
    # the kernels alone, on inputs prepared outside the timing
    xt = causal_frames(conv, x, cache_x).contiguous(memory_format=torch.channels_last_3d)
    (kt, kh, kw), o = conv.kernel_size, conv.out_channels
    b, c, t, h, w = xt.shape
    t_out = t - kt + 1
    frames = xt.transpose(1, 2)
    stacked = torch.cat([frames[:, i : i + t_out] for i in range(kt)], dim=2) if kt > 1 else frames
    stacked = stacked.reshape(b * t_out, kt * c, h, w).contiguous(memory_format=torch.channels_last)
    weight = conv.weight.transpose(1, 2).reshape(o, kt * c, kh, kw).contiguous(memory_format=torch.channels_last)
    pad2 = (conv._padding[2], conv._padding[0])
    row["conv2d_kernel"] = timed(lambda: F.conv2d(stacked, weight, conv.bias, conv.stride[1:], pad2))
    row["conv3d_kernel"] = timed(lambda: F.conv3d(xt, conv.weight, conv.bias, conv.stride, (0, *pad2)))
    flops = 2 * b * t_out * h * w * o * c * kt * kh * kw / conv.stride[1] / conv.stride[2]
    return row | {"tflop": flops / 1e12}


def time_upsample(resample: WanResample, frames: torch.Tensor) -> dict:
    """frames [B*T, C, h, w] as the resample's nn.Sequential receives them."""
    up, conv = resample.resample[0], resample.resample[1]
    row = {
        "upsample": timed(lambda: conv(up(frames))),
        "subpixel": timed(lambda: subpixel_upsample_conv(conv, frames)),
    }
    n, c, h, w = frames.shape
    row["tflop"] = 2 * n * 4 * h * w * conv.out_channels * c * 9 / 1e12
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    global timed
    timed = functools.partial(timed, repeats=args.repeats)
    autoencoder = WanVideoAutoencoder.from_pretrained(None, dtype).to(device)
    autoencoder.speed_up(channels_last=True, whole_chunk=True)
    decoder = autoencoder.stream_decoder()
    f = autoencoder.spatial_factor
    gen = torch.Generator(device).manual_seed(0)
    latents = torch.randn(1, autoencoder.latent_channels, 7, args.height // f, args.width // f, generator=gen,
                          device=device, dtype=dtype)  # fmt: skip

    calls, recording = [], [False]

    def record_conv(module, inputs):
        if recording[0]:
            x, cache_x = inputs[0], inputs[1] if len(inputs) > 1 else None
            calls.append(("causal", module, x.clone(), None if cache_x is None else cache_x.clone()))

    def record_resample(module, inputs):
        if recording[0] and module.mode.startswith("upsample"):
            calls.append(("upsample", module, inputs[0].clone(), None))

    for m in autoencoder.vae.decoder.modules():
        if isinstance(m, WanCausalConv3d):
            m.register_forward_pre_hook(record_conv)
        if isinstance(m, WanResample):
            m.register_forward_pre_hook(record_resample)

    with torch.inference_mode():
        decoder.decode(latents[:, :, :1])
        decoder.decode(latents[:, :, 1:4])
        recording[0] = True
        decoder.decode(latents[:, :, 4:7])
        recording[0] = False
        rows = []
        for kind, module, x, cache_x in calls:
            name = next(n for n, m in autoencoder.vae.decoder.named_modules() if m is module)
            if kind == "causal":
                row = time_causal(module, x, cache_x)
                shape = list(x.shape)
            else:  # the frames the resample's 2-D convolution sees: after the time upsampling (its own conv)
                b, c, t, h, w = x.shape
                t_out = 2 * t if module.mode == "upsample3d" else t
                frames = torch.randn(b * t_out, c, h, w, device=device, dtype=dtype)
                frames = frames.contiguous(memory_format=torch.channels_last)
                row = time_upsample(module, frames)
                shape = list(frames.shape)
                name += ".resample"
            rows.append({"name": name, "kind": kind, "shape": shape, **{k: round(v, 4) for k, v in row.items()}})
            print(rows[-1], flush=True)

    columns = ("conv2d", "conv3d", "conv3d_pad", "conv2d_kernel", "conv3d_kernel", "upsample", "subpixel")
    totals = {}
    for key in columns:  # ms
        totals[key] = round(sum(r.get(key, 0.0) for r in rows), 3)
    causal = [r for r in rows if r["kind"] == "causal"]
    totals["best_of_conv2d_conv3d_pad"] = round(sum(min(r["conv2d"], r["conv3d_pad"]) for r in causal), 3)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    result = {"device": name, "torch": torch.__version__, "rows": rows, "totals_ms": totals}
    (args.out / "vae_convs.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"device: {result['device']}, torch {result['torch']}; ms per call, median of {args.repeats}",
        "",
        "| convolution | input | TFLOP | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for r in rows:
        cells = [f"{r[k]:.3f}" if k in r else "-" for k in columns]
        lines.append(f"| `{r['name']}` | {r['shape']} | {r['tflop']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "| totals (ms) | " + " | ".join(totals) + " |", "|---" * (len(totals) + 1) + "|",
              "| | " + " | ".join(f"{v:.1f}" for v in totals.values()) + " |"]  # fmt: skip
    (args.out / "vae_convs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
