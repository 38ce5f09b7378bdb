"""Score every stage of the toy chain on world v2's ground truth, beside reference rows made by the same code.

    python experiments/toy_world/evaluate.py teacher CKPT --cfg 1.5,3 --shift 1,3 --out teacher.json
    python experiments/toy_world/evaluate.py students ode_init=CKPT re_dmd=CKPT:ema --out students.json

`teacher`: 21-frame samples (Euler on the teacher's ODE, classifier-free guidance) for every (cfg, shift) of the
sweep, scored by rf.eval.toy_metrics; the setting that meets the most teacher bars is `best` (ties: the higher
direction agreement, then the lower motion error). `students`: 60-s EMA-Sink streams of every checkpoint
(`:ema` streams the generator EMA), the same prompts and noise for all, scored over the whole stream and over its
last 10 s. Each JSON holds every per-video number, the means, the reference rows (rendered real clips, a frozen
object, a random walk, the mirrored direction) and the bars with met / missed; a Markdown table is printed.

Prompts: `--prompts` held-out single-object prompts (the headline split) and `--pair-prompts` two-object prompts
(the binding test), seeds no training stream reaches, `--seeds` noise seeds each.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rf.diffusion.ode import cfg_velocity, euler_solve, sigma_grid
from rf.diffusion.sampler import GeneratorNoise
from rf.eval import toy_metrics
from rf.models.loading import TEACHER_ATTRIBUTE, load_transformer
from rf.stream import Streamer
from rf.toy.world import ToyWorld
from rf.utils.cli import CONF_DIR
from rf.utils.instantiate import instantiate, pick_device

HELD_OUT = 2_000_000_011  # scene seeds for evaluation prompts: no training stream (seed * 10_000_019 + i) reaches them

# (metric, comparison, bound): the bars of the issue, each checked on the mean over the split's videos.
TEACHER_BARS = [
    ("direction_agreement", ">=", 0.90),
    ("motion_error", "<=", 0.3),
    ("cross_speed", "<=", 0.3),
    ("persistence", ">=", 0.95),
    ("area_ratio", ">=", 0.7),
    ("area_ratio", "<=", 1.3),
    ("shape_accuracy", ">=", 0.8),
    ("background_accuracy", ">=", 0.9),
    ("background_flow", "<=", 0.05),
]
STUDENT_BARS = [
    ("persistence_last10s", ">=", 0.90),
    ("direction_agreement", ">=", 0.70),
    ("background_flow", "<=", 0.10),
    ("scene_change", "<=", 1.2),
]
SHOWN = [
    "speed_ratio", "direction_agreement", "motion_error", "cross_speed", "persistence", "area_ratio",
    "shape_accuracy", "background_accuracy", "background_flow", "scene_change",
]  # fmt: skip


def load_cfg(model: str, overrides: list[str]):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("generate", overrides=[f"model={model}", *overrides])


def held_out_prompts(world: ToyWorld, single: int, pair: int) -> list[tuple[str, str]]:
    """[(split, prompt)]: `single` one-object prompts, then `pair` two-object prompts, no prompt twice."""
    out, seen, i = [], set(), 0
    for split, n, objects in (("single", single, 1), ("pair", pair, 2)):
        taken = 0
        while taken < n:
            prompt = world.sample_scene(HELD_OUT + i, objects=objects).prompt()
            i += 1
            if prompt not in seen:
                seen.add(prompt)
                out.append((split, prompt))
                taken += 1
    return out


# ----- scoring (CPU worker processes: tracking is per video) ---------------------------------------------------

_WORLD: ToyWorld | None = None


def _init(world_kwargs: dict) -> None:
    global _WORLD
    torch.set_num_threads(1)
    _WORLD = ToyWorld(**world_kwargs)


def _score(job) -> dict:
    video, prompt, last = job
    values = toy_metrics.score(video, prompt, _WORLD)
    if last:  # persistence over the last `last` frames of a long stream
        values["persistence_last10s"] = toy_metrics.score(video[:, -last:], prompt, _WORLD)["persistence"]
    return values


def score_all(videos: torch.Tensor, prompts: list[str], world_kwargs: dict, workers: int, last: int = 0) -> list:
    """videos [N, 3, T, H, W] on any device -> one dict of metrics per video (CPU processes)."""
    jobs = [(v.float().cpu().clone(), p, last) for v, p in zip(videos, prompts, strict=True)]
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(world_kwargs,)) as pool:
        return list(pool.map(_score, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def mean_rows(rows: list[dict], splits: list[str]) -> dict:
    """Per split (and 'all'): the mean of every metric over the videos where it is finite."""
    out = {}
    for split in [*dict.fromkeys(splits), "all"]:
        chosen = [r for r, s in zip(rows, splits, strict=True) if split in (s, "all")]
        keys = chosen[0].keys() if chosen else []
        out[split] = {k: _mean([r[k] for r in chosen]) for k in keys}
    return out


def _mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def check_bars(means: dict, bars) -> list[dict]:
    out = []
    for metric, op, bound in bars:
        value = means.get(metric, math.nan)
        met = math.isfinite(value) and (value >= bound if op == ">=" else value <= bound)
        out.append({"metric": metric, "bar": f"{op} {bound}", "value": value, "met": bool(met)})
    return out


def references(world: ToyWorld, world_kwargs: dict, prompts, seeds: int, frames: int, workers: int, last=0):
    """Reference rows by the same scorer: rendered real clips, frozen object, random walk, mirrored direction."""
    texts = [p for _, p in prompts for _ in range(seeds)]
    splits = [s for s, _ in prompts for _ in range(seeds)]
    seed_list = [k for _ in prompts for k in range(seeds)]
    rows = {}
    for kind in ("real", "frozen", "random_walk", "mirrored"):
        videos, _ = toy_metrics.reference_videos(world, texts, seed_list, frames, kind)
        rows[kind] = mean_rows(score_all(videos, texts, world_kwargs, workers, last), splits)
    return rows


# ----- the teacher -----------------------------------------------------------------------------------------------


def load_teacher(cfg, ckpt, device):
    """(teacher transformer, autoencoder, text encoder) on `device`: loaded once for the whole sweep."""
    arch = OmegaConf.to_container(cfg.model.transformer, resolve=True)
    model = load_transformer(arch, ckpt, causal=False, prefixes=(f"{TEACHER_ATTRIBUTE}.",))[0].to(device).eval()
    return model, instantiate(cfg.model.autoencoder).to(device), instantiate(cfg.model.text_encoder).to(device)


@torch.no_grad()
def sample_teacher(cfg, loaded, texts, noise_seeds, frames, guidance, shift, steps, device, batch=256):
    """Teacher samples [N, 3, frames, H, W] in [-1, 1]: Euler on the CFG velocity over the shifted sigma grid."""
    model, ae, text_encoder = loaded
    h, w, f = cfg.model.video.height, cfg.model.video.width, ae.spatial_factor
    out = []
    for i in range(0, len(texts), batch):
        p, seeds = texts[i : i + batch], noise_seeds[i : i + batch]
        text = text_encoder(p).to(device)
        shape = (ae.latent_channels, frames, h // f, w // f)
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        velocity = cfg_velocity(model, text, torch.zeros_like(text), guidance)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            x0, _ = euler_solve(velocity, noise.to(device), sigma_grid(steps, shift))
        out.append(ae.decode(x0.float()).clamp(-1, 1).cpu())
    return torch.cat(out)


def teacher(args, cfg, world, world_kwargs, prompts, device) -> dict:
    texts = [p for _, p in prompts for _ in range(args.seeds)]
    splits = [s for s, _ in prompts for _ in range(args.seeds)]
    noise_seeds = [HELD_OUT + 7919 * i for i in range(len(texts))]
    result = {"prompts": prompts, "seeds": args.seeds, "frames": args.frames, "ckpt": args.ckpt, "settings": []}
    loaded = load_teacher(cfg, args.ckpt, device)
    for guidance in [float(x) for x in args.cfg.split(",")]:
        for shift in [float(x) for x in args.shift.split(",")]:
            t0 = time.time()
            videos = sample_teacher(cfg, loaded, texts, noise_seeds, args.frames, guidance, shift, args.steps, device)
            rows = score_all(videos, texts, world_kwargs, args.workers)
            means = mean_rows(rows, splits)
            bars = check_bars(means["single"], TEACHER_BARS)
            entry = {"cfg": guidance, "shift": shift, "means": means, "bars": bars, "per_video": rows,
                     "bars_met": sum(b["met"] for b in bars), "seconds": time.time() - t0}  # fmt: skip
            result["settings"].append(entry)
            print(f"cfg {guidance} shift {shift}: {entry['bars_met']}/{len(bars)} bars, "
                  + ", ".join(f"{k} {means['single'].get(k, math.nan):.3f}" for k in SHOWN), flush=True)  # fmt: skip
    best = max(result["settings"], key=lambda e: (e["bars_met"], e["means"]["single"].get("direction_agreement", 0),
                                                   -e["means"]["single"].get("motion_error", 9)))  # fmt: skip
    result["best"] = {"cfg": best["cfg"], "shift": best["shift"], "bars_met": best["bars_met"]}
    result["references"] = references(world, world_kwargs, prompts, args.seeds, args.frames, args.workers)
    return result


# ----- the students ----------------------------------------------------------------------------------------------


@torch.no_grad()
def stream_student(cfg, ckpt, use_ema, texts, seconds, device, batch=128, seed=HELD_OUT):
    """Streams [N, 3, T, H, W] in [-1, 1] through the one StreamSampler; batch i's noise is the same for every ckpt."""
    streamer = Streamer.from_config(cfg, ckpt=ckpt, device=device, use_ema=use_ema)  # rf.stream: the one builder
    sampler, ae, text_encoder, sink = streamer.sampler, streamer.autoencoder, streamer.text_encoder, streamer.cache
    frames = math.ceil(seconds * cfg.model.video.fps / sink.chunk_frames) * sink.chunk_frames
    out = []
    for i in range(0, len(texts), batch):
        p = texts[i : i + batch]
        text = text_encoder(p).to(device)
        latents = sampler.rollout([(0, text)], streamer.latent_shape(frames, len(p)), GeneratorNoise(seed + i, device))
        out.append(ae.decode(latents.float()).clamp(-1, 1).cpu())
    return torch.cat(out)


def paired(a: list[float], b: list[float]) -> dict:
    """Paired difference b - a over prompts: mean, 95% percentile-bootstrap interval, n."""
    d = torch.tensor([y - x for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)])
    n = len(d)
    if n < 2:
        return {"n": n, "mean": math.nan, "ci95": [math.nan, math.nan]}
    # percentile bootstrap over prompts (10,000 resamples, fixed seed)
    pick = torch.randint(0, n, (10_000, n), generator=torch.Generator().manual_seed(0))
    means = d[pick].mean(dim=1)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    return {"n": n, "mean": d.mean().item(), "ci95": [lo, hi]}


def students(args, cfg, world, world_kwargs, prompts, device) -> dict:
    texts = [p for _, p in prompts for _ in range(args.seeds)]
    splits = [s for s, _ in prompts for _ in range(args.seeds)]
    last = int(10 * cfg.model.video.fps)
    result = {"prompts": prompts, "seeds": args.seeds, "seconds": args.seconds, "runs": {}}
    per_prompt = {}
    for spec in args.ckpt:
        name, ckpt = spec.split("=", 1)
        use_ema = ckpt.endswith(":ema")
        ckpt = ckpt.removesuffix(":ema")
        t0 = time.time()
        videos = stream_student(cfg, ckpt, use_ema, texts, args.seconds, device)
        rows = score_all(videos, texts, world_kwargs, args.workers, last)
        means = mean_rows(rows, splits)
        bars = check_bars(means["single"], STUDENT_BARS)
        result["runs"][name] = {"ckpt": ckpt, "use_ema": use_ema, "means": means, "bars": bars, "per_video": rows,
                                "seconds": time.time() - t0}  # fmt: skip
        # per prompt (single split): the mean over its seeds, for paired comparisons
        per_prompt[name] = [
            _mean([rows[j * args.seeds + k]["speed_ratio"] for k in range(args.seeds)])
            for j, (s, _) in enumerate(prompts) if s == "single"
        ]  # fmt: skip
        print(f"{name}: {sum(b['met'] for b in bars)}/{len(bars)} bars, "
              + ", ".join(f"{k} {means['single'].get(k, math.nan):.3f}" for k in [*SHOWN, "persistence_last10s"]),
              flush=True)  # fmt: skip
        if args.sheets:  # the first seed of the first 4 prompts, 32 frames across the stream
            keep = videos[:: args.seeds][:4, :, :: max(1, videos.shape[2] // 32)].half()
            torch.save(keep, Path(args.out).with_suffix(f".{name}.pt"))
        # what is scored so far survives a timeout: NAME.partial.json, replaced by NAME.json at the end
        Path(args.out).with_suffix(".partial.json").write_text(json.dumps(result, indent=1, default=float))
    names = list(per_prompt)
    result["paired_speed_ratio"] = {
        f"{b} - {a}": paired(per_prompt[a], per_prompt[b]) for a in names for b in names if a < b
    }
    result["references"] = references(world, world_kwargs, prompts, args.seeds, int(args.seconds * cfg.model.video.fps),
                                      args.workers, last)  # fmt: skip
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["teacher", "students"])
    ap.add_argument("ckpt", nargs="+", help="teacher: one checkpoint; students: NAME=CKPT[:ema] ...")
    ap.add_argument("--model", default="toy")
    ap.add_argument("--overrides", default="", help="extra Hydra overrides of the generate config, space-separated")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--pair-prompts", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--frames", type=int, default=21, help="teacher: frames per sample")
    ap.add_argument("--steps", type=int, default=48, help="teacher: Euler steps")
    ap.add_argument("--cfg", default="4.0", help="teacher: guidance scales to sweep, comma-separated")
    ap.add_argument("--shift", default="5.0", help="teacher: time shifts to sweep, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="students: stream length")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--sheets", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.stage == "teacher":
        args.ckpt = args.ckpt[0]
    cfg = load_cfg(args.model, args.overrides.split())
    video = cfg.model.video
    world_kwargs = {"height": video.height, "width": video.width, "fps": video.fps,
                    **OmegaConf.to_container(cfg.model.world, resolve=True)}  # fmt: skip
    world = ToyWorld(**world_kwargs)
    prompts = held_out_prompts(world, args.prompts, args.pair_prompts)
    device = pick_device(args.device)
    run = teacher if args.stage == "teacher" else students
    result = run(args, cfg, world, world_kwargs, prompts, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
