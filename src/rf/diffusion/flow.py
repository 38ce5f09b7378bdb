"""Flow matching as Wan trains it (PAPER.md §1).

    x_t = (1 - s) x0 + s eps,   s = t / 1000,   the net predicts v = eps - x0,   x0 = x_t - s v.

The timestep shift k warps s towards the noisy end: s' = k s / (1 + (k - 1) s). The student's
four denoising steps [1000, 750, 500, 250] are warped this way into [1000, 937.5, 833.3, 625],
exactly as Self Forcing's `warp_denoising_step` does.
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000


def sigma_of(t: torch.Tensor | float) -> torch.Tensor | float:
    """The noise level of timestep t: s = t / 1000 (t in [0, 1000], s in [0, 1])."""
    return t / NUM_TRAIN_TIMESTEPS


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """s' = k s / (1 + (k - 1) s)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def warp_timesteps(steps: list[float] | tuple[float, ...], shift: float) -> list[float]:
    """Map a denoising step list onto the shifted grid: t -> 1000 * shift(t / 1000)."""
    if not steps:
        raise ValueError("denoising steps is empty: give at least one timestep, e.g. [1000, 750, 500, 250]")
    if any(not 0 < t <= NUM_TRAIN_TIMESTEPS for t in steps) or list(steps) != sorted(steps, reverse=True):
        raise ValueError(f"denoising steps {list(steps)}: need strictly decreasing values in (0, 1000]")
    return [NUM_TRAIN_TIMESTEPS * shift_sigma(t / NUM_TRAIN_TIMESTEPS, shift) for t in steps]


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - s) x0 + s eps. `sigma` is a float or broadcasts against x0."""
    return (1 - sigma) * x0 + sigma * noise


def x0_from_flow(x_t: torch.Tensor, flow: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x0 = x_t - s v, in fp32 whatever the model's dtype (bf16 here costs visible error)."""
    return (x_t.float() - sigma * flow.float()).to(x_t.dtype)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance of two predictions (velocities or x0, as the formula is linear) [B, ...]:
    cond + (w - 1)(cond - uncond) = uncond + w (cond - uncond) (PAPER.md §3, Eq. CFG; the released code writes
    cond + 3(cond - uncond) for w = 4). w = 1 is the plain conditional prediction."""
    return cond + (guidance - 1.0) * (cond - uncond)


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target of flow matching: v = eps - x0."""
    return noise - x0


def sample_timesteps(
    batch: int,
    shift: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    t_min: float = 0.0,
    t_max: float = NUM_TRAIN_TIMESTEPS,
) -> torch.Tensor:
    """Training timesteps: uniform, shifted, clamped to [t_min, t_max]. -> [batch] float32 in (0, 1000]."""
    u = torch.rand(batch, generator=generator, device=device)
    t = NUM_TRAIN_TIMESTEPS * shift_sigma(u, shift)
    return t.clamp(t_min, t_max)
