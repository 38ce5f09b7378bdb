"""A toy scene and its clip: the specs a world samples and renders, and the rendered clip with its ground truth.

A `SceneSpec` (its objects, each an `ObjectSpec`, over a background texture) fixes a clip completely: every
frame is a pure function of the scene and the frame index (`rf.toy.world.ToyWorld.render`). A `ToyClip` is
frames of it, with the prompt that describes the scene and the objects' centres and velocities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rf.toy.grammar import write_prompt
from rf.toy.rules import BACKGROUNDS, COLOURS, DIRECTIONS, MAX_OBJECTS, SHAPES, SPEEDS, check_choice


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str
    direction: str  # at frame 0; in a bouncing world every bounce flips it
    speed: str  # speed class at frame 0
    size: float = 0.25  # diameter as a fraction of the shorter frame side
    # Centre at frame 0 as a fraction of the range the centre can reach (bounce: every start is in frame;
    # wrap: a fraction of the frame).
    start: tuple[float, float] = (0.5, 0.5)
    change_speed_at: int | None = None  # first frame moving at the other speed class

    def __post_init__(self):
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("direction", self.direction, DIRECTIONS)
        check_choice("speed", self.speed, SPEEDS)
        if not 0 < self.size <= 0.5:
            raise ValueError(f"size {self.size} is not in (0, 0.5] (a fraction of the shorter frame side)")
        if not all(0 <= s <= 1 for s in self.start):
            raise ValueError(f"start {self.start} must have both coordinates in [0, 1]")
        if self.change_speed_at is not None and self.change_speed_at < 1:
            raise ValueError(f"change_speed_at {self.change_speed_at} must be None or a frame >= 1")


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]  # drawn in order: later objects cover earlier ones
    background: str
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # background colour, RGB in [0, 1]
    texture_period: float = 0.25  # fraction of the shorter frame side
    texture_angle: float = 0.0  # radians; orients stripes and gradients

    def __post_init__(self):
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has {len(self.objects)} objects; allowed: 1 to {MAX_OBJECTS}")
        check_choice("background", self.background, BACKGROUNDS)
        if not self.texture_period > 0:
            raise ValueError(f"texture_period {self.texture_period} must be > 0")

    def prompt(self) -> str:
        """The grammar prompt of the scene (rf.toy.grammar): each object's motion at frame 0."""
        words = [(o.shape, o.colour, o.direction, o.speed, o.change_speed_at is not None) for o in self.objects]
        return write_prompt(words, self.background)


@dataclass
class ToyClip:
    video: torch.Tensor  # [3, F, H, W] float32 in [-1, 1]
    prompt: str
    positions: torch.Tensor  # [F, N_obj, 2] object centres in pixels (x, y)
    # [F, N_obj, 2] pixels per frame, to the next frame: positions[t + 1] = positions[t] + velocities[t]
    velocities: torch.Tensor
    scene: SceneSpec
