"""The toy world: a procedural text-to-video world that needs no download.

One to three coloured shapes move over a dim textured background. A clip is a pure function of a
`SceneSpec` and the frame index, so a stream of any length can be rendered in pieces, and every clip
carries its ground truth (object centres and velocities) for tests and evals.

Two rule sets (`WorldRules`, presets in `PRESETS`), chosen with `preset=`:

- **v2** (the default): objects wrap around the frame edges (a torus), so the prompted direction holds
  for the whole stream and the ground-truth positions are unwrapped; objects start near fixed anchors
  (one object: the frame centre, +-10%), so the prompt alone says where they go; large objects (11-14 px at 32x32,
  about 3 tokens of 4x4 px), 4 well-separated colours, no speed changes; backgrounds with a coarse
  period (16 px at 32x32), a few orientations and a fixed named tint per type, so a background can be
  told from its type. Most scenes hold one object; the two-object scenes move differently (binding).
- **v1**: the first world. Objects bounce off the edges, 6 colours, smaller objects, speed changes,
  fine random textures with a random tint; kept for comparison (`model/world=v1`).

Every prompt comes from a small closed grammar and parses back into a scene. The world is read in five files:

    rf.toy.rules    what a world may draw (shapes, colours, ...) and its rule sets (WorldRules, PRESETS)
    rf.toy.grammar  the prompt grammar: VOCABULARY, write_prompt, parse_prompt
    rf.toy.scene    ObjectSpec, SceneSpec (a clip's whole content) and ToyClip (frames + ground truth)
    rf.toy.draw     trajectories and pixels of a scene (pure functions)
    rf.toy.world    ToyWorld (this file): scenes from seeds or prompts, under the rules, and their clips
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace

import torch

from rf.toy import draw
from rf.toy.grammar import VOCABULARY, ObjectWords, parse_prompt
from rf.toy.rules import BACKGROUNDS, DIRECTIONS, MAX_OBJECTS, PRESETS, SHAPES, SPEEDS, TINTS, WorldRules
from rf.toy.scene import ObjectSpec, SceneSpec, ToyClip


def _plain(value):
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(value)
    return value


class ToyWorld:
    """Scenes and clips of one world: `preset` picks the rules (v2, v1), `rules` overrides any of their fields,
    `max_objects` keeps the first that many entries of `object_weights` (v1: 1 to max_objects, uniform)."""

    def __init__(
        self,
        height: int = 32,
        width: int = 32,
        fps: int = 8,
        max_objects: int | None = None,
        preset: str = "v2",
        **rules,
    ):
        for name, side in (("height", height), ("width", width)):
            if side < 16 or side % 2:
                raise ValueError(f"{name} {side} must be even and >= 16")
        if fps < 1:
            raise ValueError(f"fps {fps} must be >= 1")
        if preset not in PRESETS:
            raise ValueError(f"world preset {preset!r} is not one of {sorted(PRESETS)} (model/world=v2 or v1)")
        unknown = sorted(set(rules) - {f.name for f in fields(WorldRules)})
        if unknown:
            raise ValueError(f"unknown world rules {unknown}; allowed: {[f.name for f in fields(WorldRules)]}")
        rules = {k: _plain(v) for k, v in rules.items()}  # lists (YAML, Hydra) to the tuples of a frozen rule set
        self.rules = replace(PRESETS[preset], **rules)
        if max_objects is not None:
            if not 1 <= max_objects <= MAX_OBJECTS:
                raise ValueError(f"max_objects {max_objects} must be in 1..{MAX_OBJECTS}")
            weights = self.rules.object_weights
            weights = (weights + (weights[-1],) * MAX_OBJECTS)[:max_objects]
            self.rules = replace(self.rules, object_weights=weights)
        self.height, self.width, self.fps, self.preset = height, width, fps, preset

    @property
    def max_objects(self) -> int:
        return self.rules.max_objects

    @property
    def vocabulary(self) -> list[str]:
        return list(VOCABULARY)

    def sample_scene(self, seed: int, objects: int | None = None) -> SceneSpec:
        """The scene of `seed`; `objects` forces its object count (a split: 1 = the headline, 2 = binding)."""
        rng = random.Random(seed)
        rules = self.rules
        weights = rules.object_weights
        if len(set(weights)) == 1:  # uniform (v1): the first world's draw, so its scenes are unchanged
            n = rng.randint(1, len(weights))
        else:
            n = rng.choices(range(1, len(weights) + 1), weights=weights)[0]
        n = n if objects is None else objects
        if not 1 <= n <= MAX_OBJECTS:
            raise ValueError(f"objects={objects} must be in 1..{MAX_OBJECTS}")
        things = rng.sample([(shape, colour) for shape in SHAPES for colour in rules.colours], n)
        if len({c for _, c in things}) < n and rules.edges == "wrap":  # one colour per object: tracked by colour
            colours = rng.sample(list(rules.colours), n)
            things = [(shape, colour) for (shape, _), colour in zip(things, colours, strict=True)]
        # v1: half of the multi-object scenes move in step, so the grouped form of the grammar is common too.
        shared = n > 1 and rng.random() < rules.shared_motion
        # Without shared motion (v2) the objects move in distinct directions, so the binding is testable.
        distinct = rng.sample(list(DIRECTIONS), n) if rules.shared_motion == 0.0 else None
        scene = []
        for i, (shape, colour) in enumerate(things):
            if not (shared and scene):
                direction = distinct[i] if distinct else rng.choice(list(DIRECTIONS))
                motion = (direction, rng.choice(list(SPEEDS)), rng.random() < rules.speed_change)
            scene.append((shape, colour, *motion))
        return self._layout(scene, rng.choice(BACKGROUNDS), seed)

    def scene_from_prompt(self, prompt: str, seed: int = 0) -> SceneSpec:
        return self._layout(*parse_prompt(prompt), seed)

    def _layout(self, objects: list[ObjectWords], background: str, seed: int) -> SceneSpec:
        # Its own random stream, drawn the same way whatever the words: a sampled scene's prompt parses back
        # to exactly that scene when given the same seed.
        rng = random.Random(f"toy-layout-{seed}")
        rules = self.rules
        specs = []
        for i, (shape, colour, direction, speed, changes) in enumerate(objects):
            start = (rng.random(), rng.random())
            if rules.start_jitter is not None and rules.edges == "wrap":
                anchor = (0.5 + 0.5 * i) % 1.0
                start = tuple((anchor + (2 * u - 1) * rules.start_jitter) % 1.0 for u in start)
            size = rng.uniform(*rules.size)
            change_at = rng.randint(self.fps, 2 * self.fps)
            specs.append(ObjectSpec(shape, colour, direction, speed, size, start, change_at if changes else None))
        if rules.tints is None:
            tint = tuple(rng.uniform(0.3, 1.0) for _ in range(3))
            tint = tuple(c / max(tint) for c in tint)  # hue only: the texture sets the brightness
        else:
            tint = TINTS[rules.tints[background]]
        period = rng.uniform(*rules.texture_period)
        if rules.texture_angles is None:
            angle = rng.uniform(0, math.pi)
        else:
            angle = math.radians(rng.choice(rules.texture_angles))
        return SceneSpec(tuple(specs), background, tint, period, angle)

    def sample(self, seed: int, num_frames: int) -> ToyClip:
        return self.render(self.sample_scene(seed), num_frames)

    def render(self, scene: SceneSpec, num_frames: int, start: int = 0) -> ToyClip:
        """Frames [start, start + num_frames) of the scene's endless clip."""
        if num_frames < 1 or start < 0:
            raise ValueError(f"num_frames {num_frames} must be >= 1 and start {start} >= 0")
        t = torch.arange(start, start + num_frames + 1, dtype=torch.float64)
        wrap = self.rules.edges == "wrap"
        centres = [draw.trajectory(obj, t, self.height, self.width, self.fps, wrap) for obj in scene.objects]
        centres = torch.stack(centres, dim=1)  # [F + 1, N, 2]
        positions = centres[:-1]
        velocities = centres[1:] - centres[:-1]  # one frame past the clip so the last velocity is defined
        return ToyClip(
            video=draw.paint(scene, positions, self.height, self.width, wrap),
            prompt=scene.prompt(),
            positions=positions.float(),
            velocities=velocities.float(),
            scene=scene,
        )

    def render_along(self, scene: SceneSpec, positions: torch.Tensor) -> torch.Tensor:
        """The scene drawn with its objects at given centres instead of their motion (references for evals,
        e.g. a random walk): positions [F, N_obj, 2] pixels (x, y) -> video [3, F, H, W] float32 in [-1, 1]."""
        positions = torch.as_tensor(positions, dtype=torch.float64)
        if positions.ndim != 3 or positions.shape[1:] != (len(scene.objects), 2) or len(positions) < 1:
            raise ValueError(f"positions {tuple(positions.shape)} must be [F >= 1, {len(scene.objects)}, 2]")
        return draw.paint(scene, positions, self.height, self.width, self.rules.edges == "wrap")

    def speed_px(self, speed: str, direction: str) -> float:
        """The asked speed of a speed class along a direction's axis, in px/frame."""
        extent = self.width if DIRECTIONS[direction][0] else self.height
        return SPEEDS[speed] * extent / self.fps
