"""rf.serve.protocol: every message the page may send is validated, and each refusal names the value and the fix."""

import json

import pytest

from rf.serve.protocol import Limits, ProtocolError, Start, Stop, Switch, SwitchLimiter, parse
from rf.toy.text import check_toy_prompts

RED = "a red circle moving fast to the right on a striped background"


def toy_check(prompt: str) -> None:
    check_toy_prompts([prompt], True, "prompt")


LIMITS = Limits(("full", "window", "sink", "ema_sink"), "ema_sink", 0.99, False, 0, 80, toy_check)


def msg(**fields) -> str:
    return json.dumps(fields)


def test_valid_messages_and_defaults():
    assert parse(msg(type="start", prompt=RED), LIMITS) == Start(RED, "ema_sink", 0.99, False, 0)
    full = parse(msg(type="start", prompt=f"  {RED} ", policy="window", alpha=1, recache=True, seed=7), LIMITS)
    assert full == Start(RED, "window", 1.0, True, 7)  # whitespace folded, alpha 1 allowed
    assert parse(msg(type="switch", prompt=RED), LIMITS) == Switch(RED)
    assert parse(msg(type="stop"), LIMITS) == Stop()


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{bad", "not valid JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('"start"', "JSON str, not an object"),
        (b"\x00\x01", "binary messages are not accepted"),
        (msg(prompt=RED), "type=None is not a message type: use one of start, switch, stop"),
        (msg(type="play"), "type='play' is not a message type"),
        (msg(type="stop", now=True), "unknown field(s) now in a stop message: allowed are type"),
        (msg(type="start", prompt=RED, path="/etc/passwd"), "unknown field(s) path"),
        (msg(type="start"), "a start message needs prompt"),
        (msg(type="switch"), "a switch message needs prompt"),
        (msg(type="switch", prompt=3), "prompt must be a string, got int"),
        (msg(type="switch", prompt="   "), "prompt is empty: type a prompt"),
        (msg(type="switch", prompt="a " * 60), "more than max_prompt_chars=80: shorten it"),
        (msg(type="switch", prompt="a fox runs through snow"), "outside the toy grammar (unknown words ['fox', 'runs'"),
        (msg(type="start", prompt=RED, policy="rolling"), "policy='rolling' is not a cache policy: choose one of full"),
        (msg(type="start", prompt=RED, alpha=0), "alpha=0.0 is outside (0, 1]"),
        (msg(type="start", prompt=RED, alpha=1.5), "alpha=1.5 is outside (0, 1]"),
        (msg(type="start", prompt=RED, alpha="0.9"), "alpha='0.9' is not a number"),
        (msg(type="start", prompt=RED, alpha=True), "alpha=True is not a number"),
        ('{"type": "start", "prompt": "' + RED + '", "alpha": NaN}', "alpha=nan is not a number"),
        (msg(type="start", prompt=RED, recache="yes"), "recache='yes' must be true or false"),
        (msg(type="start", prompt=RED, seed=-1), "seed=-1 must be a whole number in [0, 2147483647]"),
        (msg(type="start", prompt=RED, seed=2.5), "seed=2.5 must be a whole number"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # deep nesting: an answer, not a RecursionError
    ],
)
def test_every_refusal_names_the_value_and_the_fix(text, needle):
    with pytest.raises(ProtocolError) as err:
        parse(text, LIMITS)
    assert needle in str(err.value)


def test_prompts_are_not_checked_against_the_toy_grammar_for_other_models():
    limits = Limits(("ema_sink",), "ema_sink", 0.99, False, 0, 80, None)
    assert parse(msg(type="switch", prompt="a fox runs through snow"), limits) == Switch("a fox runs through snow")


def test_switch_limiter_one_pending_and_a_rate():
    now = [0.0]
    limiter = SwitchLimiter(per_second=2, clock=lambda: now[0])
    limiter.check("a")
    with pytest.raises(ProtocolError, match="a switch to 'a' is still pending"):
        limiter.check("b")
    limiter.applied()
    now[0] = 0.1
    limiter.check("b")
    limiter.applied()
    now[0] = 0.2
    with pytest.raises(ProtocolError, match="more than max_switches_per_second=2 switches: slow down"):
        limiter.check("c")
    now[0] = 1.05  # the first switch is more than a second old
    limiter.check("c")
