"""A toy-world reward that pays prompt-consistent motion (world v2), from the decoded rollout and its prompts.

Per object of the prompt (tracked by its colour with rf.eval.toy_metrics: components on the torus, circular
centroid, torus-minimal velocity), averaged over the prompt's objects of distinct colours:

    r_object = clip(speed_ratio, -1, 1.5) * integrity - lambda_dup * extra_blobs

    speed_ratio  mean over frame pairs where the object is present of (v . d_asked) / s_asked: 1 as asked,
                 0 frozen, -1 the opposite way; 0 when the object is never present in two consecutive frames
    integrity    fraction of frames where the colour forms exactly one component (>= MIN_COMPONENT px) of
                 plausible area, `plausible` x the area the world draws that shape with at its mean size. The
                 default (0.55, 1.45) sits just outside what the world renders: 0.60-1.40 over sizes 0.34-0.44
                 and sub-pixel positions (squares reach 1.39, triangles 0.60); (0.7, 1.3) would fail every frame
                 of a large rendered square (2 of 64 rendered 15-frame clips scored 0 with it)
    extra_blobs  mean over frames of the number of components of the colour beyond the first

and for the video r_raw = mean_objects(r_object) - lambda_bg * background_flow, the mean optical-flow
magnitude (px/frame) over the pixels away from the objects (rf.eval.toy_metrics.background_flow): the
background of the toy world never moves.

The raw value is returned: standardising it (running statistics of the student's own rollouts) is the
caller's job. NaN for a prompt outside the toy grammar, a video with non-finite values, a clip of fewer than
2 frames, or a prompt whose objects all share colours (ambiguous by colour). Rendered clips score ~1, frozen
ones 0, random walks ~0 (their steps have no mean direction), mirrored ones ~-1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from rf.eval.toy_calibration import calibration
from rf.eval.toy_object_metrics import integrity, motion_metrics
from rf.eval.toy_scene_metrics import background_flow as measure_background_flow
from rf.eval.toy_tracking import TOLERANCE, nearest_colour, track
from rf.toy.grammar import parse_prompt
from rf.toy.world import ToyWorld


class ToyMotionReward(torch.nn.Module):
    name = "toy_motion"

    def __init__(
        self,
        world: Mapping | ToyWorld | None = None,
        height: int = 32,
        width: int = 32,
        fps: int = 8,
        lambda_bg: float = 1.0,
        lambda_dup: float = 0.5,
        plausible: tuple[float, float] = (0.55, 1.45),
        tolerance: float = TOLERANCE,
    ):
        """world: the toy world's rules, as the model config writes them ({"preset": "v2", ...}: ToyWorld's
        keyword arguments besides the frame size and fps), or a ToyWorld."""
        super().__init__()
        if isinstance(world, ToyWorld):
            self.world = world
        else:
            self.world = ToyWorld(height=height, width=width, fps=fps, **dict(world or {}))
        if lambda_bg < 0 or lambda_dup < 0:
            raise ValueError(f"lambda_bg={lambda_bg} and lambda_dup={lambda_dup} must be >= 0")
        if not 0 < plausible[0] <= 1 <= plausible[1]:
            raise ValueError(f"plausible={plausible} must be (lo, hi) with 0 < lo <= 1 <= hi")
        self.lambda_bg, self.lambda_dup = lambda_bg, lambda_dup
        self.plausible, self.tolerance = tuple(plausible), tolerance

    def _objects(self, video: torch.Tensor, prompt: str) -> float:
        """The mean over the prompt's objects of clip(speed_ratio) * integrity - lambda_dup * extra_blobs."""
        try:
            objects, _ = parse_prompt(prompt)
        except ValueError:
            return math.nan
        cal = calibration(self.world)
        _, _, h, w = video.shape
        index = nearest_colour(video, self.tolerance)
        colours = [o[1] for o in objects]
        values = []
        for shape, colour, direction, speed, _ in objects:
            if colours.count(colour) > 1 or (shape, colour) not in cal.expected_area:
                continue
            expected = cal.expected_area[shape, colour]
            tr = track(video, colour, expected, index, self.tolerance)
            ratio = motion_metrics(tr, direction, self.world.speed_px(speed, direction), h, w)["speed_ratio"]
            ratio = 0.0 if math.isnan(ratio) else min(max(ratio, -1.0), 1.5)
            whole = integrity(tr, expected, self.plausible).float().mean().item()
            extra = (tr.count - 1).clamp(min=0).float().mean().item()
            values.append(ratio * whole - self.lambda_dup * extra)
        return sum(values) / len(values) if values else math.nan

    @torch.no_grad()
    def forward(self, video: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] (decoded rollouts), one toy prompt each -> r_raw [B] float32 on the
        video's device, NaN where a sample cannot be scored."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video shape {tuple(video.shape)} must be [B, 3, T, H, W]")
        b, _, t, h, w = video.shape
        if prompts is None or len(prompts) != b:
            raise ValueError(f"ToyMotionReward needs one prompt per sample: got {prompts!r} for {b} videos")
        if (h, w) != (self.world.height, self.world.width):
            raise ValueError(f"video is {h}x{w} but the reward's world draws {self.world.height}x{self.world.width}")
        x = video.detach().float().cpu()
        out = torch.full((b,), math.nan)
        if t < 2:
            return out.to(video.device)
        # Small tensors: one CPU thread is faster than several (measured 1.0 s vs 2.3 s for 16 rollouts of 21
        # frames on 2 threads), and several training processes on one machine must not fight over the cores.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            finite = torch.isfinite(x).flatten(1).all(dim=1)
            x = torch.where(finite.view(-1, 1, 1, 1, 1), x, torch.zeros_like(x))
            flow = measure_background_flow(x, self.tolerance).nan_to_num(0.0)  # NaN: objects cover every pixel
            for i in range(b):
                if finite[i]:
                    out[i] = self._objects(x[i], prompts[i]) - self.lambda_bg * flow[i].item()
        finally:
            torch.set_num_threads(threads)
        return out.to(video.device)
