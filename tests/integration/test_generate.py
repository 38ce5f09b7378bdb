"""`python -m rf.generate`: an mp4 of the asked length, and one clear line for each bad input."""

import pytest

from rf.utils.video import probe
from tests.cli import files_under, run_rf

RED = "a red circle moving fast to the left on a striped background"
BLUE = "a blue square moving slowly upwards on a dotted background"
SWITCH = f'[{{at:0,prompt:"{RED}"}},{{at:3,prompt:"{BLUE}"}}]'


def test_generate_streams_an_mp4_with_a_prompt_switch(tmp_path):
    out = tmp_path / "clip.mp4"
    r = run_rf("generate", "seconds=6", f"schedule={SWITCH}", f"out={out}", "sink=ema_sink", runs=tmp_path)
    assert r.returncode == 0, r.stderr
    info = probe(out)
    assert info == {"frames": 48, "fps": 8.0, "height": 32, "width": 32}
    assert out.with_suffix(".png").stat().st_size > 0
    assert not (tmp_path / "clip.partial.mp4").exists()
    assert "2 prompts" in r.stdout


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (
            [f'schedule=[{{at:5,prompt:"{RED}"}},{{at:0,prompt:"{BLUE}"}}]'],
            "strictly increasing",
        ),
        (["schedule=[]"], "schedule is empty"),
        (["frames=10"], "frames=10"),
        (["model.video.height=33"], "height=33"),
        (["out=/nonexistent_dir/x.mp4"], "/nonexistent_dir"),
        (["sink.alpha=1.5"], "alpha=1.5"),
        (["sink.policy=rolling"], "rolling"),
        (["ckpt=/no/such.ckpt"], "/no/such.ckpt"),
        (
            ["fast=exact", "device=cpu"],
            "fast path switches graphs, norm_rope, block_norms, commit_kernel, vae_norm_silu, overlap, "
            "cudnn_benchmark, attention=cudnn need a CUDA GPU",
        ),
        (["fast.attention=fa9"], "fast.attention='fa9'"),
    ],
)
def test_bad_input_gives_one_line_and_no_output(tmp_path, overrides, needle):
    r = run_rf("generate", "seconds=3", *overrides, runs=tmp_path)
    assert r.returncode != 0
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert files_under(tmp_path) == []


def test_unknown_sink_value_names_the_choices(tmp_path):
    r = run_rf("generate", "sink=rolling", runs=tmp_path)
    assert r.returncode != 0
    assert "sink/rolling" in r.stderr and "ema_sink" in r.stderr
    assert files_under(tmp_path) == []


def test_debug_shows_the_traceback(tmp_path):
    r = run_rf("generate", "frames=10", "traceback=true", runs=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_generate_on_the_cpu_side_of_the_fast_path(tmp_path):
    """fast.static_cache (what the CUDA graphs replay) and the reused-K/V approximation stream through generate."""
    out = tmp_path / "fast.mp4"
    r = run_rf("generate", "seconds=3", "fast.static_cache=true", "fast.cache_pass=reuse", f"out={out}", runs=tmp_path)
    assert r.returncode == 0, r.stderr
    assert probe(out)["frames"] == 24
