"""What a toy world may draw, and its two rule sets.

The closed sets every scene is drawn from (shapes, colours, directions, speed classes, background types and
the v2 background tints) and `WorldRules`, everything a world decides: edges (wrap or bounce), which colours,
how many objects, their sizes, speed changes, where they start, the background textures and tints.
`PRESETS` names the two rule sets, v2 (the default) and v1 (`model/world=v1`); `rf.toy.world` tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

# Background tints of world v2, one per type (dim: the texture scales them to at most 0.35).
TINTS = {"teal": (0.3, 1.0, 0.85), "amber": (1.0, 0.65, 0.3), "violet": (0.75, 0.5, 1.0), "grey": (1.0, 1.0, 1.0)}


def check_choice(name: str, value: str, allowed) -> None:
    """Raise a ValueError naming `value` and the allowed ones when `value` is not in `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {sorted(allowed)}")


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
        check_choice("edges", self.edges, ("wrap", "bounce"))
        for colour in self.colours:
            check_choice("colour", colour, COLOURS)
        if not self.object_weights or len(self.object_weights) > MAX_OBJECTS or min(self.object_weights) < 0:
            raise ValueError(f"object_weights {self.object_weights}: 1 to {MAX_OBJECTS} weights, none negative")
        if not 0 < self.size[0] <= self.size[1] <= 0.5:
            raise ValueError(f"size {self.size} must be (lo, hi) with 0 < lo <= hi <= 0.5")
        if self.tints is not None:
            for background in BACKGROUNDS:
                check_choice(f"tints[{background}]", self.tints.get(background), TINTS)

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
