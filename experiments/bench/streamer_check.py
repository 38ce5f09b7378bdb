"""The presets end to end through rf.stream.Streamer, the path make generate / serve / eval take, on one GPU: the
shipped toy student in bf16 under fast=plain, fast=exact and fast=approximate (its FP8 scales calibrated; the toy
autoencoder, since TAEHV's weights are not shipped), 8 chunks three times each; the latents against plain's, and a
float32 toy under fast=exact, which rf.stream refuses (cuDNN attention takes bf16 / fp16 only).

    python experiments/bench/streamer_check.py      # one GPU, about a minute; results/streamer_check.log
"""

import time

import torch
from hydra import compose, initialize_config_dir

from rf.diffusion.sampler import GeneratorNoise
from rf.fast.fp8 import Fp8Linear
from rf.stream import Streamer
from rf.toy.shipped import use_shipped
from rf.utils.cli import CONF_DIR

PROMPT = "a red circle moving fast to the right on a striped background"
out = {}
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    cfg = compose("serve", overrides=["device=cuda", "fast=exact"])
try:
    Streamer.from_config(cfg, ckpt=use_shipped(cfg))
except ValueError as e:
    print("float32 toy with fast=exact refused:", e)
for name, overrides in (
    ("plain", []),
    ("exact", ["fast=exact"]),
    ("approximate", ["fast=approximate", "fast.decoder=wan"]),
):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("serve", overrides=["device=cuda", "dtype=bfloat16", *overrides])
    t0 = time.perf_counter()
    s = Streamer.from_config(cfg, ckpt=use_shipped(cfg))
    build = time.perf_counter() - t0
    text = s.text_encoder([PROMPT]).to(s.device)
    runs = []
    for _ in range(3):
        s.decoder.reset()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            chunks = [
                c.latents.clone()
                for c in s.sampler.stream([(0, text)], s.latent_shape(24), GeneratorNoise(0, s.device))
            ]
            frames = [s.decoder.decode(c) for c in chunks]
        torch.cuda.synchronize()
        runs.append(time.perf_counter() - t0)
    lat = torch.cat(chunks, 2).float().cpu()
    out[name] = lat
    fp8 = [m for m in s.model.modules() if isinstance(m, Fp8Linear)]
    err = (
        "" if name == "plain" else f", latents vs plain {float((lat - out['plain']).norm() / out['plain'].norm()):.2e}"
    )
    print(
        f"{name}: build {build:.1f} s, 8 chunks in {', '.join(f'{r:.2f}' for r in runs)} s, "
        f"frames {tuple(frames[-1].shape)} finite {bool(torch.isfinite(frames[-1]).all())}, "
        f"fp8 layers {len(fp8)} calibrated {sum(m.calibrated for m in fp8)}{err}",
        flush=True,
    )
