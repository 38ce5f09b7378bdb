"""The toy prompt grammar: the words a toy prompt may use, and prompts written from and parsed into objects.

Prompts come from a small closed grammar, so the toy text encoder can use a word-level vocabulary and
every prompt parses back into a scene:

    prompt := clause ("and" clause)* "on a" BACKGROUND "background"
    clause := thing ("and" thing)* "moving" SPEED DIRECTION ["while speeding up" | "while slowing down"]
    thing  := "a" COLOUR SHAPE

e.g. "a blue square and a yellow triangle moving slowly upwards on a dotted background". Objects that
share a motion share a clause. The prompt names each object's motion at frame 0; in v1, bounces flip
the direction later and a speed change switches the speed class at `ObjectSpec.change_speed_at`.

What a prompt says about one object is an `ObjectWords` tuple; `write_prompt` and `parse_prompt` are
inverses over lists of them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from rf.toy.rules import BACKGROUNDS, COLOURS, SHAPES

_SPEED_WORDS = {"slow": "slowly", "fast": "fast"}
_DIRECTION_WORDS = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}
_CHANGE_WORDS = {"slow": "while speeding up", "fast": "while slowing down"}  # keyed by the speed before it

_PHRASES = (*_SPEED_WORDS.values(), *_DIRECTION_WORDS.values(), *_CHANGE_WORDS.values())
VOCABULARY = sorted(
    {"a", "and", "moving", "on", "background", *SHAPES, *COLOURS, *BACKGROUNDS, *" ".join(_PHRASES).split()}
)

# What a prompt says about one object: (shape, colour, direction, speed, changes_speed).
ObjectWords = tuple[str, str, str, str, bool]


def split_words(prompt: str) -> list[str]:
    """Lower-case words, punctuation dropped: the parser and the text encoder must split alike."""
    return re.findall(r"[a-z0-9]+", prompt.lower())


def write_prompt(objects: Sequence[ObjectWords], background: str) -> str:
    """([(shape, colour, direction, speed, changes_speed), ...], background) -> the grammar prompt; neighbouring
    objects with equal motion (direction, speed, changes_speed) share a clause."""
    clauses = []
    for (direction, speed, changes), group in itertools.groupby(objects, key=lambda words: words[2:]):
        things = " and ".join(f"a {colour} {shape}" for shape, colour, *_ in group)
        clause = f"{things} moving {_SPEED_WORDS[speed]} {_DIRECTION_WORDS[direction]}"
        clauses.append(f"{clause} {_CHANGE_WORDS[speed]}" if changes else clause)
    return f"{' and '.join(clauses)} on a {background} background"


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
