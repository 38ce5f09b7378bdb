"""Prompt schedules: validation, and seconds -> chunk indices for the toy and the Wan frame layouts."""

import pytest

from rf.diffusion.schedule import PromptSwitch, parse_schedule, switches_to_chunks


def toy_frames(latent: int) -> int:
    return latent


def wan_frames(latent: int) -> int:
    return 1 + 4 * (latent - 1) if latent else 0


def test_single_prompt():
    assert parse_schedule(None, "a red circle") == [PromptSwitch(0.0, "a red circle")]


@pytest.mark.parametrize(
    "schedule, prompt, needle",
    [
        (None, "", "prompt is empty"),
        (None, "   ", "prompt is empty"),
        ([], None, "schedule is empty"),
        ([{"at": 1, "prompt": "a"}], None, "starting at 0"),
        ([{"at": 0, "prompt": "a"}, {"at": 0, "prompt": "b"}], None, "strictly increasing"),
        ([{"at": 0, "prompt": "a"}, {"at": 5, "prompt": ""}], None, "empty prompt"),
        ([{"prompt": "a"}], None, "needs both"),
    ],
)
def test_bad_schedules(schedule, prompt, needle):
    with pytest.raises(ValueError, match=needle):
        parse_schedule(schedule, prompt)


def test_toy_switch_lands_on_the_first_chunk_at_or_after_the_time():
    # toy: 3 frames per chunk at 8 fps -> chunk i starts at 3i/8 s
    sw = parse_schedule([{"at": 0, "prompt": "a"}, {"at": 15, "prompt": "b"}], None)
    assert switches_to_chunks(sw, 8, 3, toy_frames, 80) == [(0, "a"), (40, "b")]


def test_wan_switch_uses_the_4x_temporal_layout():
    # Wan at 16 fps: chunk 0 = 9 frames, then 12 per chunk; chunk i >= 1 starts at (1 + 4 (3i - 1)) / 16 s
    sw = parse_schedule([{"at": 0, "prompt": "a"}, {"at": 2.0, "prompt": "b"}], None)
    # chunk 3 starts at frame 33 = 2.06 s, chunk 2 at frame 21 = 1.31 s
    assert switches_to_chunks(sw, 16, 3, wan_frames, 7) == [(0, "a"), (3, "b")]


def test_switch_past_the_end_and_two_switches_in_one_chunk():
    with pytest.raises(ValueError, match="past the end"):
        sw = parse_schedule([{"at": 0, "prompt": "a"}, {"at": 99, "prompt": "b"}], None)
        switches_to_chunks(sw, 8, 3, toy_frames, 4)
    with pytest.raises(ValueError, match="same chunk"):
        sw = parse_schedule([{"at": t, "prompt": p} for t, p in [(0, "a"), (0.1, "b"), (0.2, "c")]], None)
        switches_to_chunks(sw, 8, 3, toy_frames, 4)
