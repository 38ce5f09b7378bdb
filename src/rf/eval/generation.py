"""Generate an evaluation's videos: fixed seeds, resumable, through the streaming generator of rf.stream.

Each video streams into OUT/videos/NAME.partial.mp4 and is renamed to NAME.mp4 when complete
(rf.utils.video.StreamingVideoWriter), then recorded in the manifest. A killed run therefore leaves finished
videos plus at most one .partial.mp4; the rerun deletes the partial file, skips every finished video and makes
the rest. A finished video that the manifest does not know yet (killed between the rename and the manifest
write) is adopted when its length and size are those asked for: its seed fixes its content. A manifest written
with other generation settings (weights, cache policy, length, ...) stops the run before anything is touched.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from rf.diffusion.sampler import GeneratorNoise
from rf.diffusion.schedule import PromptSwitch, switches_to_chunks
from rf.eval.layout import VIDEO_DIR, Manifest, VideoEntry, settings_difference
from rf.stream import Streamer, latent_frames_for
from rf.utils.instantiate import to_dict
from rf.utils.stop import Stop
from rf.utils.video import StreamingVideoWriter, probe


def generation_settings(cfg: DictConfig) -> dict:
    """What determines the videos' content: a rerun must match it to reuse them."""
    return {
        "ckpt": str(Path(cfg.ckpt).resolve()) if cfg.ckpt else None,
        "use_ema": bool(cfg.use_ema),
        "model": {
            "name": cfg.model.name,
            "transformer": to_dict(cfg.model.transformer),
            "video": to_dict(cfg.model.video),
        },
        "sink": to_dict(cfg.sink),
        "sampler": to_dict(cfg.sampler),
        "seconds": cfg.seconds if cfg.frames is None else None,
        "frames": cfg.frames,
        "seed": cfg.seed,
        "switch_at": cfg.switch_at,
        "recache_on_switch": bool(cfg.recache_on_switch),
        "dtype": str(cfg.dtype),
        # the fast path's approximations change the videos (its exact switches only change bf16 rounding)
        "approximations": {k: cfg.fast[k] for k in ("fp8", "cache_pass", "decoder")},
    }


class StreamGenerator:
    """rf.stream's generator, built once, streaming one video per call."""

    def __init__(self, cfg: DictConfig):
        # random weights (no ckpt) are seeded with cfg.seed: the same ones in every run, so a resume fits
        self.streamer = Streamer.from_config(cfg, seed=cfg.seed)
        print(f"weights: {cfg.ckpt} ({self.streamer.weights})" if cfg.ckpt else "weights: random (no ckpt= given)")
        self.device, self.cache_cfg = self.streamer.device, self.streamer.cache
        self.autoencoder, self.text_encoder = self.streamer.autoencoder, self.streamer.text_encoder
        self.sampler, self.decoder = self.streamer.sampler, self.streamer.decoder
        self.height, self.width, self.fps = self.streamer.height, self.streamer.width, self.streamer.fps
        self.latent_frames = latent_frames_for(cfg, self.autoencoder, self.cache_cfg.chunk_frames)
        self.n_chunks = self.sampler.num_chunks(self.latent_frames)
        self.frames = self.autoencoder.num_frames(self.latent_frames)
        self.recache_on_switch = bool(cfg.recache_on_switch)

    def chunk_start(self, chunk: int) -> int:
        """First video frame of a chunk."""
        return self.autoencoder.num_frames(chunk * self.cache_cfg.chunk_frames) if chunk else 0

    def plan(self, entry: VideoEntry) -> list[tuple[int, str]]:
        """The entry's schedule -> [(first chunk, prompt)]; records each switch's first frame in the entry."""
        switches = [PromptSwitch(s["at"], s["prompt"]) for s in entry.schedule]
        plan = switches_to_chunks(
            switches, self.fps, self.cache_cfg.chunk_frames, self.autoencoder.num_frames, self.n_chunks
        )
        for s, (chunk, _) in zip(entry.schedule, plan, strict=True):
            s["frame"] = self.chunk_start(chunk)
        return plan

    @torch.inference_mode()
    def generate(self, entry: VideoEntry, path: Path) -> int:
        """Stream one video to `path` (via path.partial.mp4); returns its frame count."""
        prompts = [(chunk, self.text_encoder([p])) for chunk, p in self.plan(entry)]
        shape = self.streamer.latent_shape(self.latent_frames)
        self.decoder.reset()
        noise = GeneratorNoise(entry.seed, self.device)
        with StreamingVideoWriter(path, self.fps, self.height, self.width) as writer:
            for chunk in self.sampler.stream(prompts, shape, noise, recache_on_switch=self.recache_on_switch):
                writer.write(self.decoder.decode(chunk.latents).float().cpu())  # [1, 3, t, H, W]
        return writer.frames_written


def generate_missing(
    cfg: DictConfig, out: Path, entries: list[VideoEntry], max_videos: int | None
) -> tuple[list[VideoEntry], bool]:
    """Make every video of `entries` not finished yet -> (the entries as recorded, True when all are done;
    False: stopped by max_videos)."""
    folder = out / VIDEO_DIR
    settings = generation_settings(cfg)
    manifest = Manifest.load(out) or Manifest(out, settings)
    if manifest.settings and (diff := settings_difference(manifest.settings, settings)):
        raise ValueError(
            f"out={out} holds videos made with other settings ({diff}): choose another name= or out=, "
            "or delete that folder to start over"
        )
    manifest.settings = settings
    finished = {e.file for e in entries if e.file in manifest.videos and (folder / e.file).is_file()}
    todo = [e for e in entries if e.file not in finished]
    limit = len(todo) if max_videos is None else min(len(todo), max_videos)
    generator = StreamGenerator(cfg) if limit else None  # a finished run loads no model
    for e in todo[:limit]:
        generator.plan(e)  # a bad schedule fails here, before any file is written

    folder.mkdir(parents=True, exist_ok=True)
    for partial in folder.glob("*.partial.mp4"):
        print(f"removing {partial.name}: left unfinished by an earlier run, made again")
        partial.unlink()
    if finished:
        print(f"resuming: {len(finished)} of {len(entries)} videos already made in {folder}")
    start = time.perf_counter()
    with Stop() as stop:
        for e in tqdm(todo[:limit], unit="video", desc="generating", disable=not limit):
            path = folder / e.file
            if path.is_file():  # finished, but the manifest was not written: adopt it if it is what was asked for
                info = probe(path)
                want = (generator.frames, generator.height, generator.width)
                if (info["frames"], info["height"], info["width"]) != want:
                    raise ValueError(
                        f"{path} is {info['frames']} frames of {info['width']}x{info['height']}, not the {want[0]} "
                        f"frames of {want[2]}x{want[1]} asked for: delete it, or choose another out="
                    )
                frames = info["frames"]
            else:
                frames = generator.generate(e, path)
            e.frames, e.fps, e.height, e.width = frames, float(generator.fps), generator.height, generator.width
            manifest.videos[e.file] = e
            manifest.save()
            if stop.requested:  # SIGINT / SIGTERM: the video in hand is finished and recorded, the others wait
                done = sum((folder / x.file).is_file() for x in entries)
                stop.exit(f"{done} of {len(entries)} videos made in {folder} (listed in its manifest), none scored yet")
    manifest.save()
    if limit:
        print(f"generated {limit} videos in {time.perf_counter() - start:.1f} s")
    if limit < len(todo):
        print(f"stopped after max_videos={max_videos}: {len(todo) - limit} videos left; rerun the same command")
    return [manifest.videos[e.file] if e.file in manifest.videos else e for e in entries], limit == len(todo)
