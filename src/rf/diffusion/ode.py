"""The teacher's probability-flow ODE, solved with Euler steps on Wan's shifted sigma grid.

    x_{k+1} = x_k + (s_{k+1} - s_k) v(x_k, t_k),     s from 1 (noise) to 0 (data)

With N a multiple of 4 the unshifted grid passes through 1, 0.75, 0.5, 0.25, so the shifted grid
passes exactly through the student's warped timesteps [1000, 937.5, 833.3, 625]: ODE pairs can
store the teacher's trajectory at those points (CausVid's recipe).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rf.diffusion.flow import NUM_TRAIN_TIMESTEPS, cfg, shift_sigma


def sigma_grid(num_steps: int, shift: float) -> torch.Tensor:
    """[num_steps + 1] shifted sigmas from 1 down to 0 (float64 so grid points compare exactly)."""
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps}: need at least one ODE step")
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64), shift)


def cfg_velocity(model: torch.nn.Module, text: torch.Tensor, uncond: torch.Tensor, scale: float) -> Callable:
    """The guided velocity (x, t) -> v = cfg(v_cond, v_uncond, scale) (rf.diffusion.flow.cfg); scale 1 is the
    plain conditional flow, one forward pass instead of two (PAPER.md §3)."""

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return model(x, t, text).sample
        v = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, uncond])).sample
        v_cond, v_uncond = v.chunk(2)
        return cfg(v_cond, v_uncond, scale)

    return velocity


@torch.no_grad()
def euler_solve(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    record: list[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate from noise [B, ...] at sigmas[0] to sigmas[-1]; return the end and the states at `record`."""
    x, states = noise, []
    record = set(record or [])
    for k in range(len(sigmas) - 1):
        if k in record:
            states.append(x.clone())
        t = torch.full((x.shape[0],), float(sigmas[k]) * NUM_TRAIN_TIMESTEPS, device=x.device)
        v = velocity(x, t)
        x = (x.float() + float(sigmas[k + 1] - sigmas[k]) * v.float()).to(noise.dtype)
        if progress is not None:
            progress(k)
    return x, states
