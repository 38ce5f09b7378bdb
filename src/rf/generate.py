"""python -m rf.generate ckpt=PATH prompt="..." seconds=30: stream a video to an mp4.

The streaming generator is built by rf.stream (on the fast path with fast=exact: rf.fast.fast_path).
Its StreamSampler denoises the chunks; they are decoded as they arrive (the VAE keeps its causal cache
across chunks) and written at once to NAME.partial.mp4, renamed to NAME.mp4 when the stream ends: a
crash at minute 3 leaves three playable minutes. A prompt schedule switches the text mid-stream without
resetting the attention cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from rf.diffusion.sampler import GeneratorNoise
from rf.diffusion.schedule import parse_schedule, switches_to_chunks
from rf.stream import Streamer, latent_frames_for, text_encoder_config
from rf.toy.shipped import is_shipped, use_shipped
from rf.toy.text import check_toy_prompts, is_toy_encoder
from rf.utils.cli import entry
from rf.utils.stop import Stop
from rf.utils.video import StreamingVideoWriter, contact_sheet


@entry("generate")
def main(cfg: DictConfig) -> Path:
    switches = parse_schedule(OmegaConf.to_container(cfg.schedule) if cfg.schedule is not None else None, cfg.prompt)
    if is_toy_encoder(text_encoder_config(cfg)):
        check_toy_prompts(
            [s.prompt for s in switches], cfg.strict_prompts, "prompt" if cfg.schedule is None else "schedule"
        )

    out = Path(cfg.out)
    if out.suffix != ".mp4":
        raise ValueError(f"out={out}: the output must be an .mp4 file")
    if not out.parent.is_dir() and out.parent != Path(cfg.paths.runs) / "generate":  # rf's own: made below
        raise FileNotFoundError(f"out={out}: folder {out.parent} does not exist; create it or choose another out=")

    # the model, its cache policy, the fast path, decoder and text encoder: rf.stream
    ckpt = use_shipped(cfg) if is_shipped(cfg.ckpt) else cfg.ckpt
    streamer = Streamer.from_config(cfg, ckpt=ckpt)
    if is_shipped(cfg.ckpt):
        print(
            f"weights: rf's shipped toy {cfg.ckpt.partition(':')[2] or 'student'} ({ckpt}, sha256 checked; "
            f"what it can and cannot do: {ckpt.parent / 'MODEL_CARD.md'})"
        )
    else:
        print(f"weights: {cfg.ckpt} ({streamer.weights})" if cfg.ckpt else "weights: random (no ckpt= given)")
    cache_cfg, sampler, autoencoder = streamer.cache, streamer.sampler, streamer.autoencoder
    h, w, fps = streamer.height, streamer.width, streamer.fps

    latent_frames = latent_frames_for(cfg, autoencoder, cache_cfg.chunk_frames)
    n_chunks = sampler.num_chunks(latent_frames)
    plan = switches_to_chunks(switches, fps, cache_cfg.chunk_frames, autoencoder.num_frames, n_chunks)
    with torch.no_grad():
        prompts = [(chunk, streamer.text_encoder([p])) for chunk, p in plan]
    shape = streamer.latent_shape(latent_frames)
    decoder = streamer.decoder
    total = autoencoder.num_frames(latent_frames)
    keep = set(torch.linspace(0, total - 1, min(total, 32)).round().long().tolist())  # frames for the sheet
    sheet, kept = [], []  # kept: every frame as uint8, when frames_out= asks for them (lossless, for scoring)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)  # only now: a bad input above leaves no folder behind
    # SIGINT / SIGTERM: the chunk in hand is decoded and written, then the stream ends and NAME.mp4 is finalised
    with Stop() as stop, torch.inference_mode(), StreamingVideoWriter(out, fps, h, w) as writer:
        bar = tqdm(total=n_chunks, unit="chunk", desc=f"streaming {cache_cfg.policy}")
        for chunk in sampler.stream(
            prompts, shape, GeneratorNoise(cfg.seed, streamer.device), recache_on_switch=cfg.recache_on_switch
        ):
            frames = decoder.decode(chunk.latents).float().cpu()  # [1, 3, t, H, W]
            first = writer.frames_written
            writer.write(frames)
            if cfg.get("frames_out"):
                kept.append(((frames[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))  # [3, t, H, W]
            sheet += [frames[0, :, i - first] for i in range(first, writer.frames_written) if i in keep]
            bar.update(1)
            bar.set_postfix(
                fps=f"{writer.frames_written / (time.perf_counter() - start):.1f}", prompt=chunk.prompt_index
            )
            if stop.requested:
                break
        bar.close()
    png = out.with_suffix(".png")
    image = Image.fromarray(contact_sheet(torch.stack(sheet, dim=1), columns=8).numpy())
    zoom = max(1, 128 // min(h, w))  # toy frames are 32 px: enlarge so a person can see them
    image.resize((image.width * zoom, image.height * zoom), Image.NEAREST).save(png)
    seconds = writer.frames_written / fps
    if stop.requested:  # the stream so far, whole and playable: a stream cannot resume, its cache is gone
        stop.exit(f"{out} holds the first {seconds:.1f} s of {total / fps:.1f} ({writer.frames_written} of {total} "
                  f"frames, stopped early), contact sheet {png}", then="make the whole stream with")  # fmt: skip
    print(f"wrote {out} ({writer.frames_written} frames, {seconds:.1f} s at {fps} fps, {len(plan)} prompts)")
    print(f"contact sheet: {png}")
    if cfg.get("frames_out"):
        torch.save(torch.cat(kept, dim=1), cfg.frames_out)
        print(f"frames (uint8 [3, T, H, W]): {cfg.frames_out}")
    return out


if __name__ == "__main__":
    main()
