"""The WebSocket messages between the page and the server, and the validation of every one the page sends.

Page -> server (JSON text messages; anything else is refused with an error and the connection stays open):

    {"type": "start", "prompt": str, "policy": str, "alpha": float, "recache": bool, "seed": int}
                        policy, alpha, recache and seed are optional (the server's defaults)
    {"type": "switch", "prompt": str}     the running stream takes this prompt from its next chunk
    {"type": "stop"}                      the running stream ends at the next chunk boundary (or leave the queue)

Server -> page (JSON text, and binary frames):

    hello    {fps, height, width, chunk_frames, policies, defaults, max_prompt_chars, max_seconds, model}
    queued   {position}                   1 = next; sent again at every change
    refused  {message}                    the queue is full; the server closes the connection
    started  {mp4, yaml}                  the download links of this stream
    chunk    {index, prompt_index, frames, stamp_ms, compute_s, seconds}, then `frames` binary messages
             (one encoded image each, JPEG or PNG); stamp_ms: epoch ms when the chunk finished decoding
    switched {prompt_index, chunk, at}    a switch took effect at this chunk (at: its start, seconds)
    ended    {reason, chunks, seconds}    stopped, max_seconds, idle, left, error
    error    {message}                    a refused message: names the value and the fix

Validation lives here so that every rule and its message has one place (tests/unit/test_serve_protocol.py).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

FIELDS = {  # type -> {field: required}
    "start": {"type": True, "prompt": True, "policy": False, "alpha": False, "recache": False, "seed": False},
    "switch": {"type": True, "prompt": True},
    "stop": {"type": True},
}
MAX_SEED = 2**31 - 1


class ProtocolError(ValueError):
    """A message the server refuses; str() is the text the page shows."""


@dataclass(frozen=True)
class Start:
    prompt: str
    policy: str
    alpha: float
    recache: bool
    seed: int


@dataclass(frozen=True)
class Switch:
    prompt: str


@dataclass(frozen=True)
class Stop:
    pass


Message = Start | Switch | Stop


@dataclass(frozen=True)
class Limits:
    """What a message may hold: the server's config (conf/serve.yaml) and the model's text encoder."""

    policies: tuple[str, ...]  # the cache policies of conf/sink/
    default_policy: str
    default_alpha: float
    default_recache: bool
    default_seed: int
    max_prompt_chars: int
    check_prompt: Callable[[str], None] | None = None  # raises ValueError for a prompt the model cannot read


def _prompt(value, limits: Limits, field: str = "prompt") -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{field} must be a string, got {type(value).__name__}: type a prompt")
    prompt = " ".join(value.split())
    if not prompt:
        raise ProtocolError(f"{field} is empty: type a prompt")
    if len(prompt) > limits.max_prompt_chars:
        raise ProtocolError(f"{field} has {len(prompt)} characters, more than max_prompt_chars="
                            f"{limits.max_prompt_chars}: shorten it")  # fmt: skip
    if limits.check_prompt is not None:
        try:
            limits.check_prompt(prompt)
        except ValueError as err:
            raise ProtocolError(str(err)) from None
    return prompt


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"{field}={value!r} is not a number: give one")
    return float(value)


def parse(text: str | bytes, limits: Limits) -> Message:
    """One message from the page -> Start, Switch or Stop; ProtocolError naming what is wrong and the fix."""
    if not isinstance(text, str):
        raise ProtocolError("binary messages are not accepted: send JSON text")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ProtocolError(f"message is not valid JSON ({err.__class__.__name__}): send a JSON object") from None
    if not isinstance(data, dict):
        raise ProtocolError(f'message is a JSON {type(data).__name__}, not an object: send {{"type": ...}}')
    kind = data.get("type")
    if kind not in FIELDS:
        raise ProtocolError(f"type={kind!r} is not a message type: use one of {', '.join(FIELDS)}")
    unknown = sorted(set(data) - set(FIELDS[kind]))
    if unknown:
        raise ProtocolError(f"unknown field(s) {', '.join(unknown)} in a {kind} message: "
                            f"allowed are {', '.join(FIELDS[kind])}")  # fmt: skip
    missing = [f for f, required in FIELDS[kind].items() if required and f not in data]
    if missing:
        raise ProtocolError(f"a {kind} message needs {', '.join(missing)}")
    if kind == "stop":
        return Stop()
    prompt = _prompt(data["prompt"], limits)
    if kind == "switch":
        return Switch(prompt)

    policy = data.get("policy", limits.default_policy)
    if policy not in limits.policies:
        raise ProtocolError(f"policy={policy!r} is not a cache policy: choose one of {', '.join(limits.policies)}")
    alpha = _number(data.get("alpha", limits.default_alpha), "alpha")
    if not 0 < alpha <= 1:
        raise ProtocolError(f"alpha={alpha} is outside (0, 1]: the EMA-Sink decay, e.g. 0.99")
    recache = data.get("recache", limits.default_recache)
    if not isinstance(recache, bool):
        raise ProtocolError(f"recache={recache!r} must be true or false")
    seed = data.get("seed", limits.default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ProtocolError(f"seed={seed!r} must be a whole number in [0, {MAX_SEED}]")
    return Start(prompt, policy, alpha, recache, seed)


class SwitchLimiter:
    """At most one switch pending (sent, not yet applied at a chunk boundary) and at most `per_second` accepted
    in any second: a flood of switches is answered, not queued."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic):
        self.per_second, self.clock = per_second, clock
        self.accepted: deque[float] = deque()  # times of the switches accepted in the last second
        self.pending: str | None = None  # the prompt sent and not yet applied

    def check(self, prompt: str) -> None:
        """Raise ProtocolError if this switch must be refused; otherwise count it as pending."""
        if self.pending is not None:
            raise ProtocolError(f"a switch to {self.pending!r} is still pending (it takes effect at the next chunk): "
                                "wait for it before switching again")  # fmt: skip
        now = self.clock()
        while self.accepted and now - self.accepted[0] >= 1.0:
            self.accepted.popleft()
        if len(self.accepted) >= self.per_second:
            raise ProtocolError(f"more than max_switches_per_second={self.per_second:g} switches: slow down")
        self.accepted.append(now)
        self.pending = prompt

    def applied(self) -> None:
        self.pending = None


def error(message: str) -> dict:
    return {"type": "error", "message": message}
