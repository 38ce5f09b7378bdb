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

Prompts come from a small closed grammar, so the toy text encoder can use a word-level vocabulary and
every prompt parses back into a scene:

    prompt := clause ("and" clause)* "on a" BACKGROUND "background"
    clause := thing ("and" thing)* "moving" SPEED DIRECTION ["while speeding up" | "while slowing down"]
    thing  := "a" COLOUR SHAPE

e.g. "a blue square and a yellow triangle moving slowly upwards on a dotted background". Objects that
share a motion share a clause. The prompt names each object's motion at frame 0; in v1, bounces flip
the direction later and a speed change switches the speed class at `change_speed_at`.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import torch

SHAPES = ("circle", "square", "triangle")
COLOURS = {  # RGB in [0, 1], saturated so the objects stand out against the dim background
    "red": (1.0, 0.15, 0.15),
    "green": (0.15, 0.9, 0.2),
    "blue": (0.2, 0.35, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "white": (1.0, 1.0, 1.0),
    "purple": (0.7, 0.2, 1.0),
}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (x, y), y grows downwards
SPEEDS = {"slow": 0.15, "fast": 0.5}  # frame extents per second, so motion looks the same at any size or fps
BACKGROUNDS = ("striped", "checkered", "dotted", "gradient")
MAX_OBJECTS = 3

_SPEED_WORDS = {"slow": "slowly", "fast": "fast"}
_DIRECTION_WORDS = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}
_CHANGE_WORDS = {"slow": "while speeding up", "fast": "while slowing down"}  # keyed by the speed before it
_OTHER_SPEED = {"slow": "fast", "fast": "slow"}

_PHRASES = (*_SPEED_WORDS.values(), *_DIRECTION_WORDS.values(), *_CHANGE_WORDS.values())
VOCABULARY = sorted(
    {"a", "and", "moving", "on", "background", *SHAPES, *COLOURS, *BACKGROUNDS, *" ".join(_PHRASES).split()}
)


def split_words(prompt: str) -> list[str]:
    """Lower-case words, punctuation dropped: the parser and the text encoder must split alike."""
    return re.findall(r"[a-z0-9]+", prompt.lower())


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {sorted(allowed)}")


# Background tints of world v2, one per type (dim: the texture scales them to at most 0.35).
TINTS = {"teal": (0.3, 1.0, 0.85), "amber": (1.0, 0.65, 0.3), "violet": (0.75, 0.5, 1.0), "grey": (1.0, 1.0, 1.0)}


@dataclass(frozen=True)
class WorldRules:
    """How scenes are drawn and how objects move. The defaults are world v2; `PRESETS["v1"]` is the first world."""

    edges: str = "wrap"  # wrap: objects leave one edge and enter at the opposite one; bounce: they reflect
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    object_weights: tuple[float, ...] = (0.8, 0.2)  # relative frequency of scenes with 1, 2, ... objects
    shared_motion: float = 0.0  # probability that a multi-object scene moves in step (one clause)
    size: tuple[float, float] = (0.34, 0.44)  # object diameter, a fraction of the shorter side (uniform)
    speed_change: float = 0.0  # probability that an object changes speed class 1-2 s in
    texture_period: tuple[float, float] = (0.5, 0.5)  # fraction of the shorter side (uniform)
    texture_angles: tuple[float, ...] | None = (0.0, 45.0, 90.0, 135.0)  # degrees; None: uniform in [0, 180)
    # wrap only: object i starts within +-start_jitter (a fraction of the frame) of its anchor, the frame centre
    # shifted by i/2 of the frame in x and y (one object: the centre; two: the centre and the corner), so a
    # clip's first frame says where its objects are and the prompt alone says where they go; None: anywhere.
    # Why 0.1: with starts anywhere the world is translation invariant, and knowing the direction barely lowers a
    # denoiser's loss at any noise level; a teacher learns to read the direction words far faster when the start
    # is known (experiments/toy_world/README.md, "Why direction was missed").
    start_jitter: float | None = 0.1
    # background -> tint name in TINTS; None: a random hue per scene
    tints: dict | None = field(
        default_factory=lambda: {"striped": "teal", "checkered": "amber", "dotted": "violet", "gradient": "grey"}
    )

    def __post_init__(self):
        _check_choice("edges", self.edges, ("wrap", "bounce"))
        for colour in self.colours:
            _check_choice("colour", colour, COLOURS)
        if not self.object_weights or len(self.object_weights) > MAX_OBJECTS or min(self.object_weights) < 0:
            raise ValueError(f"object_weights {self.object_weights}: 1 to {MAX_OBJECTS} weights, none negative")
        if not 0 < self.size[0] <= self.size[1] <= 0.5:
            raise ValueError(f"size {self.size} must be (lo, hi) with 0 < lo <= hi <= 0.5")
        if self.tints is not None:
            for background in BACKGROUNDS:
                _check_choice(f"tints[{background}]", self.tints.get(background), TINTS)

    @property
    def max_objects(self) -> int:
        return len(self.object_weights)


PRESETS = {
    "v2": WorldRules(),
    "v1": WorldRules(
        edges="bounce",
        colours=tuple(COLOURS),
        object_weights=(1.0, 1.0),
        shared_motion=0.5,
        size=(0.2, 0.3),
        speed_change=0.25,
        texture_period=(0.15, 0.35),
        texture_angles=None,
        tints=None,
    ),
}


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
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("speed", self.speed, SPEEDS)
        if not 0 < self.size <= 0.5:
            raise ValueError(f"size {self.size} is not in (0, 0.5] (a fraction of the shorter frame side)")
        if not all(0 <= s <= 1 for s in self.start):
            raise ValueError(f"start {self.start} must have both coordinates in [0, 1]")
        if self.change_speed_at is not None and self.change_speed_at < 1:
            raise ValueError(f"change_speed_at {self.change_speed_at} must be None or a frame >= 1")


def _motion(obj: ObjectSpec) -> tuple[str, str, bool]:
    """What a clause of the prompt says about an object: objects with equal motion share a clause."""
    return obj.direction, obj.speed, obj.change_speed_at is not None


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
        _check_choice("background", self.background, BACKGROUNDS)
        if not self.texture_period > 0:
            raise ValueError(f"texture_period {self.texture_period} must be > 0")

    def prompt(self) -> str:
        clauses = []
        for (direction, speed, changes), group in itertools.groupby(self.objects, key=_motion):
            things = " and ".join(f"a {o.colour} {o.shape}" for o in group)
            clause = f"{things} moving {_SPEED_WORDS[speed]} {_DIRECTION_WORDS[direction]}"
            clauses.append(f"{clause} {_CHANGE_WORDS[speed]}" if changes else clause)
        return f"{' and '.join(clauses)} on a {self.background} background"


@dataclass
class ToyClip:
    video: torch.Tensor  # [3, F, H, W] float32 in [-1, 1]
    prompt: str
    positions: torch.Tensor  # [F, N_obj, 2] object centres in pixels (x, y)
    # [F, N_obj, 2] pixels per frame, to the next frame: positions[t + 1] = positions[t] + velocities[t]
    velocities: torch.Tensor
    scene: SceneSpec


# What a prompt says about one object: (shape, colour, direction, speed, changes_speed).
ObjectWords = tuple[str, str, str, str, bool]


def parse_prompt(prompt: str) -> tuple[list[ObjectWords], str]:
    """Grammar prompt -> ([(shape, colour, direction, speed, changes_speed), ...], background)."""
    words = split_words(prompt)
    unknown = sorted(set(words) - set(VOCABULARY))
    if unknown:
        raise ValueError(f"prompt {prompt!r} has words outside the toy grammar: {unknown}; allowed: {VOCABULARY}")
    pos = 0

    def read(options: dict[str, str], what: str) -> str:
        # Options map phrases to values; an empty phrase matches anything, so it makes the read optional.
        nonlocal pos
        for phrase, value in options.items():
            n = len(phrase.split())
            if words[pos : pos + n] == phrase.split():
                pos += n
                return value
        raise ValueError(f"prompt {prompt!r}: expected {what} at word {pos}, allowed: {list(options)}")

    objects = []
    while True:
        things = []
        while True:
            read({"a": "a"}, "'a'")
            colour = read({c: c for c in COLOURS}, "a colour")
            things.append((read({s: s for s in SHAPES}, "a shape"), colour))
            if read({"and": "and", "moving": "moving"}, "'and' or 'moving'") == "moving":
                break
        speed = read({w: s for s, w in _SPEED_WORDS.items()}, "a speed")
        direction = read({w: d for d, w in _DIRECTION_WORDS.items()}, "a direction")
        before = read({**{w: s for s, w in _CHANGE_WORDS.items()}, "": ""}, "a speed change")
        if before and before != speed:
            raise ValueError(f"prompt {prompt!r}: '{_CHANGE_WORDS[before]}' contradicts moving '{_SPEED_WORDS[speed]}'")
        objects += [(shape, colour, direction, speed, bool(before)) for shape, colour in things]
        if read({"and": "and", "on": "on"}, "'and' or 'on'") == "on":
            break
    read({"a": "a"}, "'a'")
    background = read({b: b for b in BACKGROUNDS}, "a background")
    read({"background": "background"}, "'background'")
    if pos != len(words):
        raise ValueError(f"prompt {prompt!r}: unexpected words after 'background': {words[pos:]}")
    return objects, background


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
        centres = torch.stack([self._trajectory(obj, t) for obj in scene.objects], dim=1)  # [F + 1, N, 2]
        positions = centres[:-1]
        velocities = centres[1:] - centres[:-1]  # one frame past the clip so the last velocity is defined
        video = self._background(scene)[:, None].repeat(1, num_frames, 1, 1)  # [3, F, H, W]
        for i, obj in enumerate(scene.objects):
            cover = self._coverage(obj, positions[:, i])  # [F, H, W]
            colour = torch.tensor(COLOURS[obj.colour], dtype=torch.float64)[:, None, None, None]
            video = video + cover * (colour - video)
        return ToyClip(
            video=(2 * video - 1).float(),
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
        video = self._background(scene)[:, None].repeat(1, len(positions), 1, 1)  # [3, F, H, W]
        for i, obj in enumerate(scene.objects):
            cover = self._coverage(obj, positions[:, i])  # [F, H, W]
            colour = torch.tensor(COLOURS[obj.colour], dtype=torch.float64)[:, None, None, None]
            video = video + cover * (colour - video)
        return (2 * video - 1).float()

    def _radius(self, obj: ObjectSpec) -> float:
        return obj.size * min(self.height, self.width) / 2

    def speed_px(self, speed: str, direction: str) -> float:
        """The asked speed of a speed class along a direction's axis, in px/frame."""
        extent = self.width if DIRECTIONS[direction][0] else self.height
        return SPEEDS[speed] * extent / self.fps

    def _trajectory(self, obj: ObjectSpec, t: torch.Tensor) -> torch.Tensor:
        """Centres at frames t: [T] -> [T, 2] pixels (x, y). Closed form, so any frame costs the same. When edges
        wrap, the centres are unwrapped (they leave the frame; the object is drawn at the centre mod the frame)."""
        r = self._radius(obj)
        extent = torch.tensor([self.width, self.height], dtype=torch.float64)
        dx, dy = DIRECTIONS[obj.direction]
        axis, sign = (0, dx) if dx else (1, dy)
        v0, v1 = (SPEEDS[s] * extent[axis].item() / self.fps for s in (obj.speed, _OTHER_SPEED[obj.speed]))
        c = obj.change_speed_at
        travelled = v0 * t if c is None else v0 * t.clamp(max=c) + v1 * (t - c).clamp(min=0)  # [T]
        if self.rules.edges == "wrap":
            centre = (torch.tensor(obj.start, dtype=torch.float64) * extent).repeat(len(t), 1)  # [T, 2]
            centre[:, axis] += sign * travelled
            return centre
        span = extent - 2 * r  # the centre stays in [r, extent - r]: the object bounces when its edge hits
        centre = (r + torch.tensor(obj.start, dtype=torch.float64) * span).repeat(len(t), 1)  # [T, 2]
        # Bouncing between 0 and L is a triangle wave of the unbounded distance along the axis.
        length = span[axis].item()
        unfolded = obj.start[axis] * length + sign * travelled
        centre[:, axis] = r + length - ((unfolded % (2 * length)) - length).abs()
        return centre

    def _coverage(self, obj: ObjectSpec, centres: torch.Tensor) -> torch.Tensor:
        """How much of each pixel the object covers: centres [F, 2] -> [F, H, W] in [0, 1]."""
        xs = torch.arange(self.width, dtype=torch.float64) + 0.5  # [W] pixel centres
        ys = torch.arange(self.height, dtype=torch.float64)[:, None] + 0.5  # [H, 1]
        x, y = xs - centres[:, 0, None, None], ys - centres[:, 1, None, None]  # [F, 1, W], [F, H, 1]
        if self.rules.edges == "wrap":  # offsets on the torus: the nearest copy of the centre
            x = torch.remainder(x + self.width / 2, self.width) - self.width / 2
            y = torch.remainder(y + self.height / 2, self.height) - self.height / 2
        r = self._radius(obj)
        if obj.shape == "circle":
            sdf = torch.sqrt(x**2 + y**2) - r
        elif obj.shape == "square":
            sdf = torch.maximum(x.abs(), y.abs()) - r
        else:  # triangle filling the square's box, apex up: base y = r, sides through (0, -r) and (+-r, r)
            sdf = torch.maximum(y - r, (2 * x.abs() - y - r) / math.sqrt(5))
        # A one-pixel ramp across the edge: cheap anti-aliasing that keeps sub-pixel motion visible.
        return (0.5 - sdf).clamp(0, 1)

    def _background(self, scene: SceneSpec) -> torch.Tensor:
        """Static dim texture: [3, H, W] in [0, 0.35], in shorter-side units so it looks alike at any size."""
        side = min(self.height, self.width)
        x = (torch.arange(self.width, dtype=torch.float64) + 0.5) / side  # [W]
        y = (torch.arange(self.height, dtype=torch.float64)[:, None] + 0.5) / side  # [H, 1]
        period, cos, sin = scene.texture_period, math.cos(scene.texture_angle), math.sin(scene.texture_angle)
        if scene.background == "striped":
            pattern = (0.5 + 1.5 * torch.sin(2 * math.pi * (x * cos + y * sin) / period)).clamp(0, 1)
        elif scene.background == "checkered":
            pattern = ((x / period).floor() + (y / period).floor()) % 2
        elif scene.background == "dotted":  # dots half a period across on a square grid
            u, v = (x / period) % 1 - 0.5, (y / period) % 1 - 0.5  # offsets from the nearest dot, in periods
            distance = torch.sqrt(u**2 + v**2) * period * side  # pixels
            pattern = (0.5 + 0.25 * period * side - distance).clamp(0, 1)
        else:  # gradient through the frame centre
            along = (x - self.width / side / 2) * cos + (y - self.height / side / 2) * sin
            pattern = (0.5 + along).clamp(0, 1)
        pattern = pattern.expand(self.height, self.width)
        tint = torch.tensor(scene.tint, dtype=torch.float64)[:, None, None]
        return tint * (0.1 + 0.25 * pattern)
