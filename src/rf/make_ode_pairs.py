"""python -m rf.make_ode_pairs: the teacher's ODE trajectories for ODE initialisation (CausVid).

For each prompt, solve the teacher's probability-flow ODE (Euler, `ode_steps` steps on the shifted
grid, classifier-free guidance) from seeded noise, and keep the states at the student's timesteps
plus the clean endpoint: [K+1, C, F, H, W] per sample. Written in shards with checksums
(rf.lit.ode_pairs); a killed run, relaunched with the same command, continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rf.diffusion.flow import warp_timesteps
from rf.diffusion.ode import cfg_velocity, euler_solve, sigma_grid
from rf.lit.ode_pairs import MANIFEST, OdePairWriter
from rf.lit.prompts import PromptDataModule
from rf.models.loading import load_transformer
from rf.toy.text import check_toy_prompts, is_toy_encoder
from rf.utils.cli import entry
from rf.utils.files import read_prompt_file
from rf.utils.instantiate import instantiate, pick_device
from rf.utils.stop import Stop
from rf.utils.video import check_frame_size


def record_indices(grid: torch.Tensor, timesteps: list[float], ode_steps: int) -> list[int]:
    """Grid indices at the student's timesteps; the grid must pass through each of them."""
    out = []
    for t in timesteps:
        hit = torch.nonzero((grid * 1000 - t).abs() < 1e-4).flatten()
        if hit.numel() == 0:
            raise ValueError(
                f"ode_steps={ode_steps}: the ODE grid misses the student's timestep {t:.2f}; "
                "use a multiple of 4 (e.g. 48)"
            )
        out.append(int(hit[0]))
    return out


@entry("ode_pairs")
def main(cfg: DictConfig) -> None:
    device = pick_device(cfg.device)
    if cfg.num_pairs < 1 or cfg.batch_size < 1:
        raise ValueError(f"num_pairs={cfg.num_pairs}, batch_size={cfg.batch_size}: both must be >= 1")
    if cfg.prompts is not None and is_toy_encoder(cfg.model.text_encoder):
        check_toy_prompts(read_prompt_file(cfg.prompts), cfg.strict_prompts, f"prompts={cfg.prompts}")
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    timesteps = warp_timesteps(sampler["denoising_steps"], sampler["shift"])
    grid = sigma_grid(cfg.ode_steps, sampler["shift"])
    record = record_indices(grid, timesteps, cfg.ode_steps)

    arch = OmegaConf.to_container(cfg.model.transformer, resolve=True)
    autoencoder = instantiate(cfg.model.autoencoder)
    f = autoencoder.spatial_factor
    check_frame_size(cfg.model.video.height, cfg.model.video.width, f, arch["patch_size"][1])
    shape = (
        autoencoder.latent_channels,
        cfg.latent_frames,
        cfg.model.video.height // f,
        cfg.model.video.width // f,
    )
    meta = {
        "teacher": str(cfg.teacher_ckpt),
        "timesteps": timesteps,
        "ode_steps": cfg.ode_steps,
        "guidance": cfg.guidance,
        "shift": sampler["shift"],
        "latent_shape": list(shape),
        "seed": cfg.seed,
        "prompts": cfg.prompts,
    }
    video = cfg.model.video
    prompts = PromptDataModule(prompts=cfg.prompts, height=video.height, width=video.width, fps=video.fps,
                               world=cfg.model.get("world"), seed=cfg.seed).prompt_of  # fmt: skip

    def load_teacher():
        return load_transformer(arch, cfg.teacher_ckpt, causal=False)[0].to(device).eval()

    # Every input is checked before the store is created: a bad prompt file or teacher leaves no folder behind.
    # A store that exists may be complete already, and then the teacher is not needed at all.
    teacher = load_teacher() if not (Path(cfg.out) / MANIFEST).is_file() else None
    runs = Path(cfg.paths.runs).resolve()
    if runs in Path(cfg.out).resolve().parents:  # rf's own runs folder is created on demand; others must exist
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    writer = OdePairWriter(cfg.out, shard_size=cfg.shard_size, meta=meta)
    if writer.completed >= cfg.num_pairs:
        print(f"{cfg.out} already holds {writer.completed} pairs")
        return

    if teacher is None:
        teacher = load_teacher()
    text_encoder = instantiate(cfg.model.text_encoder).to(device)

    bar = tqdm(total=cfg.num_pairs, initial=writer.completed, unit="pair", desc="teacher ODE")
    with Stop() as stop:  # SIGINT / SIGTERM: the batch in hand is solved; a part shard is dropped, a whole one kept
        while writer.completed < cfg.num_pairs:
            first, size = writer.next_shard()
            size = min(size, cfg.num_pairs - first)
            states, texts, seeds = [], [], []
            for start in range(first, first + size, cfg.batch_size):
                index = list(range(start, min(start + cfg.batch_size, first + size)))
                batch_prompts = [prompts(i) for i in index]
                noise = torch.stack([
                    torch.randn(shape, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + i)) for i in index
                ]).to(device)  # fmt: skip
                with torch.no_grad():
                    text = text_encoder(batch_prompts).to(device)
                    velocity = cfg_velocity(teacher, text, torch.zeros_like(text), cfg.guidance)
                    x0, kept = euler_solve(velocity, noise, grid, record=record)
                states.append(torch.stack([*kept, x0], dim=1).cpu())  # [b, K+1, C, F, H, W]
                texts += batch_prompts
                seeds += [cfg.seed * 1_000_003 + i for i in index]
                bar.update(len(index))
                if stop.requested:  # the batch in hand is solved; the rest of its shard is not
                    break
            dropped = size - len(seeds)
            if not dropped:
                writer.write_shard(torch.cat(states), texts, seeds)
            if stop.requested:
                bar.close()
                note = f"a part shard of {len(seeds)} pairs was dropped" if dropped else "no part shard was left"
                shards = len(writer.manifest["shards"])
                stop.exit(f"{writer.completed} of {cfg.num_pairs} ODE pairs in {cfg.out}, {shards} whole shards "
                          f"({note})")  # fmt: skip
    bar.close()
    print(f"{cfg.out}: {writer.completed} ODE pairs")


if __name__ == "__main__":
    main()
