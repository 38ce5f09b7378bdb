"""The Wan decoder's widest convolutions (96 and 192 channels) timed in forms that could run them faster.

    python experiments/bench/conv96.py OUTDIR [--autotune] [--rounds 2]      (one GPU)

A steady chunk decodes 12 frames at 480x832; the last up-block's six 27-tap causal convolutions (96 -> 96 channels)
take 38 ms of its 100 (results/profile_vae_layout.md), at about half the card's matmul rate: cuDNN's kernel tiles
the 96 output channels by 64. The block before it runs 192 -> 192 at 240x416. Each form computes the same
convolution of C channels (the causal cache's 2 frames in front, spatial padding inside the kernel), bf16,
channels-last unless named, cuDNN's algorithms timed (cudnn.benchmark); W is the next multiple of 128 above C:

  conv3d_C            what vae_conv3d_from=96 runs: cuDNN's 3-D convolution, C -> C
  conv3d_C_nobias     the same without its bias
  conv3d_outW         zero filters up to W outputs, the output sliced back to C channels (fast.vae_min_out)
  conv3d_outW_nobias  the same without its bias
  conv3d_W            W -> W channels (inputs and filters padded): a tile-friendly width
  conv3d_C_ncdhw      C -> C in the contiguous (channels-first) layout
  conv2d_stacked_C    the 3 input frames of each output frame stacked along channels (3C -> C), one 2-D convolution
                      (the stacking copy not timed)
  conv2d_autotune_C   (--autotune) the stacked 2-D convolution under torch.compile's max-autotune: Inductor's Triton
                      convolution templates against cuDNN

Each form is timed `rounds` times in turn (the card's clocks drift): median ms of 20 calls after 3 (CUDA events),
TFLOP/s of the C-channel convolution's own FLOPs, and the largest difference from conv3d_C relative to its largest
value. Writes OUTDIR/conv96.json and prints each row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from rf.fast.timing import median_seconds


def forms(c: int, t: int, h: int, w: int, autotune: bool) -> dict:
    """The forms above for c -> c channels over t output frames of h x w (the causal cache's 2 frames in front)."""
    dev, bf16, cl = torch.device("cuda"), torch.bfloat16, torch.channels_last_3d
    x = torch.randn(1, c, t + 2, h, w, device=dev, dtype=bf16).contiguous(memory_format=cl)
    weight = (torch.randn(c, c, 3, 3, 3, device=dev) / (27 * c) ** 0.5).to(bf16).contiguous(memory_format=cl)
    bias = torch.randn(c, device=dev, dtype=bf16) * 0.1
    pad = (0, 1, 1)  # time: the cache is in front already; space: inside the kernel
    wide = -(-c // 128) * 128 if c % 128 else c + 128  # the next multiple of 128 above c
    w_out = torch.cat([weight, weight.new_zeros(wide - c, *weight.shape[1:])]).contiguous(memory_format=cl)
    b_out = torch.cat([bias, bias.new_zeros(wide - c)])
    x_in = torch.cat([x, x.new_zeros(1, wide - c, *x.shape[2:])], 1).contiguous(memory_format=cl)
    w_in = torch.cat([w_out, w_out.new_zeros(wide, wide - c, *w_out.shape[2:])], 1).contiguous(memory_format=cl)
    x_nc, w_nc = x.contiguous(), weight.contiguous()
    frames = x.transpose(1, 2)  # [1, t + 2, C, H, W]
    stacked = torch.cat([frames[:, i : i + t] for i in range(3)], dim=2).reshape(t, 3 * c, h, w)
    stacked = stacked.contiguous(memory_format=torch.channels_last)
    w2d = weight.transpose(1, 2).reshape(c, 3 * c, 3, 3).contiguous(memory_format=torch.channels_last)
    out = {
        f"conv3d_{c}": lambda: F.conv3d(x, weight, bias, 1, pad),
        f"conv3d_{c}_nobias": lambda: F.conv3d(x, weight, None, 1, pad),
        f"conv3d_out{wide}": lambda: F.conv3d(x, w_out, b_out, 1, pad)[:, :c],
        f"conv3d_out{wide}_nobias": lambda: F.conv3d(x, w_out, None, 1, pad)[:, :c],
        f"conv3d_{wide}": lambda: F.conv3d(x_in, w_in, b_out, 1, pad)[:, :c],
        f"conv3d_{c}_ncdhw": lambda: F.conv3d(x_nc, w_nc, bias, 1, pad),
        f"conv2d_stacked_{c}": lambda: F.conv2d(stacked, w2d, bias, 1, 1).unsqueeze(0).transpose(1, 2),
    }
    if autotune:
        compiled = torch.compile(lambda s, wt, b: F.conv2d(s, wt, b, 1, 1), mode="max-autotune-no-cudagraphs")
        out[f"conv2d_autotune_{c}"] = lambda: compiled(stacked, w2d, bias).unsqueeze(0).transpose(1, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=12, help="output frames of a steady chunk")
    parser.add_argument("--autotune", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="each form timed this many times, in turn")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    rows = []
    for c, h, w in ((96, 480, 832), (192, 240, 416)):  # the last up-block's and the one before it
        fns = forms(c, args.frames, h, w, args.autotune)
        flops = 2 * args.frames * h * w * c * c * 27
        with torch.no_grad():
            ref = fns[f"conv3d_{c}"]().float()
            diffs = {name: ((fn().float() - ref).abs().max() / ref.abs().max()).item() for name, fn in fns.items()}
            for round_ in range(args.rounds):
                for name, fn in fns.items():
                    ms = 1e3 * median_seconds(fn, repeats=20, warm=3)
                    rows.append({"form": name, "round": round_, "channels": c, "height": h, "width": w, "ms": ms,
                                 "tflops": flops / ms / 1e9, "max_diff": diffs[name]})  # fmt: skip
                    print(f"{name:24s} {ms:7.3f} ms  {flops / ms / 1e9:6.1f} TFLOP/s  diff {diffs[name]:.1e}",
                          flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
            "frames": args.frames}  # fmt: skip
    (args.out / "conv96.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
