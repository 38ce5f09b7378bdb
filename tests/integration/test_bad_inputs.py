"""Every entry point answers every bad input it can receive the same way (rf.utils.cli).

One table: entry point x case. A bad input exits with status 2 and one line on stderr, `error: ...`,
naming the offending value and what to do, leaves no file behind (the one documented exception, a
`NAME.partial.mp4` holding what a stream wrote before failing, does not arise here since each failure
happens before the first frame), and shows a traceback only with `debug=true` (checked on a row of each
entry point). An over-long prompt is not an error: it is truncated, with a warning that says by how much.

How the harder cases are made, honestly and without root:
    unwritable output  a folder chmod 555; when the tests run as root (which ignores permissions), /sys,
                       whose top level no one may create files in
    full disk          NAME.partial.mp4, the file the video writer opens, is a symlink to /dev/full: every
                       write to it fails with ENOSPC from the kernel, as on a full disk (the first write,
                       the mp4 header, already does)

Cases an entry point cannot receive are left out: `bench` streams a random-weight model from a prompt
string (no prompt file, no weights, any length); `make_ode_pairs` solves a bidirectional teacher, for
which any length is whole (the student's chunking is checked when ODE init reads the pairs); the full
disk is staged for `generate` only, whose output path is fixed by `out=`.

Known gaps are rows marked xfail(strict=True), with the reason: such a row fails the suite once the gap
is closed, so that its mark goes too.
"""

import os
import tempfile
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel

from tests.cli import files_under, run_rf, write_tiny_re_dmd

WORDS = "a red circle moving fast to the right on a striped background"  # 12 words of the toy vocabulary
LONG = " ".join([WORDS] * 4)  # 48 words: the toy text encoder keeps 40

# The tiny toy Re-DMD (tests.cli), a user's file next to rf's configs (--config-dir): one iteration, no videos.
TINY = dict(module={"max_iterations": 1}, callbacks={"video_log": None})
TRAIN = ["--config-dir={tmp}/conf", "experiment=tiny"]
ODE = ["teacher_ckpt=null", "num_pairs=1", "batch_size=1", "ode_steps=4", "latent_frames=3", "out={tmp}/pairs"]
ENCODE = ["text_encoder=toy", "cache={tmp}/cache"]
BENCH = ["model=toy", "clip_seconds=1", "stream_seconds=1", "repeats=1", "warmup_chunks=1", "minutes=[]"]
EVAL = ["model.video.height=16", "model.video.width=16", "toy_prompts=1", "seeds=1", "frames=15"]

MISSING, EMPTY, BINARY = "{tmp}/missing.txt", "{tmp}/empty.txt", "{tmp}/binary.txt"


def row(entry, case, args, needle, debug=False, marks=()):
    """needle: text the error line must contain (None: the row expects the over-long prompt's warning)."""
    return pytest.param(entry, args, needle, debug, id=f"{entry}-{case}", marks=marks)


TABLE = [
    # ----- train ---------------------------------------------------------------------------------------
    row("train", "missing-prompt-file", [*TRAIN, f"data.prompts={MISSING}"], "missing.txt: no such prompt file", True),
    row("train", "empty-prompt-file", [*TRAIN, f"data.prompts={EMPTY}"], "empty.txt holds no prompts"),
    row("train", "binary-prompt-file", [*TRAIN, f"data.prompts={BINARY}"], "binary.txt is not UTF-8 text"),
    row("train", "over-long-prompt", [*TRAIN, "data.prompts={tmp}/long.txt"], None),
    row(
        "train",
        "resolution",
        [*TRAIN, "model.video.height=18"],
        "model.video.height=18 must be a positive multiple of 4",
    ),
    row(
        "train", "length", [*TRAIN, "module.latent_frames=7"], "7 latent frames is not a whole number of 3-frame chunks"
    ),
    row("train", "unknown-option", [*TRAIN, "module.max_iteratoins=3"], "+module.max_iteratoins=3", True),
    row("train", "weights-folder", [*TRAIN, "module.teacher_ckpt={tmp}/weights"], "weights is incomplete: missing"),
    row(
        "train", "other-model-size", [*TRAIN, "module.teacher_ckpt={tmp}/small.pt"], "small.pt holds another model size"
    ),
    row("train", "unwritable-output", [*TRAIN, "paths.runs={unwritable}/runs"], "cannot write {unwritable}/runs"),
    # ----- generate ------------------------------------------------------------------------------------
    row("generate", "over-long-prompt", [f'prompt="{LONG}"', "frames=3", "out={tmp}/long.mp4"], None),
    row("generate", "resolution", ["model.video.height=18"], "model.video.height=18 must be a positive multiple of 4"),
    row("generate", "length", ["frames=10"], "frames=10 is not a whole number of 3-frame chunks"),
    row("generate", "unknown-option", ["sead=3"], "Could not override 'sead'"),
    row("generate", "weights-folder", ["ckpt={tmp}/weights"], "weights is incomplete: missing"),
    row("generate", "other-model-size", ["ckpt={tmp}/small.pt"], "small.pt holds another model size"),
    row("generate", "unwritable-output", ["out={unwritable}/x.mp4"], "out={unwritable}/x.mp4: cannot write in"),
    row("generate", "full-disk", ["frames=3", "out={tmp}/full/clip.mp4"], "No space left on device", True),
    # ----- evaluate ------------------------------------------------------------------------------------
    row("evaluate", "missing-prompt-file", [*EVAL, f"prompts={MISSING}"], "missing.txt: no such prompt file"),
    row("evaluate", "empty-prompt-file", [*EVAL, f"prompts={EMPTY}"], "empty.txt holds no prompts"),
    row("evaluate", "binary-prompt-file", [*EVAL, f"prompts={BINARY}"], "binary.txt is not UTF-8 text"),
    row("evaluate", "over-long-prompt", [*EVAL, "prompts={tmp}/long.txt"], None),
    row("evaluate", "resolution", [*EVAL, "model.video.height=18"], "model.video.height=18 must", True),
    row("evaluate", "length", [*EVAL, "frames=10"], "frames=10 is not a whole number"),
    row("evaluate", "unknown-option", [*EVAL, "sead=3"], "Could not override 'sead'"),
    row("evaluate", "weights-folder", [*EVAL, "ckpt={tmp}/weights"], "weights is incomplete: missing"),
    row("evaluate", "other-model-size", [*EVAL, "ckpt={tmp}/small.pt"], "small.pt holds another"),
    row("evaluate", "unwritable-output", [*EVAL, "out={unwritable}/eval"], "out={unwritable}/eval: cannot write"),
    row("evaluate", "gpu-only-fast-path", [*EVAL, "fast=exact", "device=cpu"], "need a CUDA GPU, this run is on cpu"),
    # ----- bench ---------------------------------------------------------------------------------------
    row("bench", "unknown-option", [*BENCH, "polices=[full]"], "Could not override 'polices'"),
    row(
        "bench", "unwritable-output", [*BENCH, "out={unwritable}/b.json"], "out={unwritable}/b.json: cannot write", True
    ),
    row(
        "bench",
        "resolution",
        [*BENCH, "model.video.height=18"],
        "model.video.height=18",
    ),
    # ----- make_ode_pairs ------------------------------------------------------------------------------
    row("make_ode_pairs", "missing-prompt-file", [*ODE, f"prompts={MISSING}"], "missing.txt: no such prompt file"),
    row("make_ode_pairs", "empty-prompt-file", [*ODE, f"prompts={EMPTY}"], "empty.txt holds no prompts"),
    row("make_ode_pairs", "binary-prompt-file", [*ODE, f"prompts={BINARY}"], "binary.txt is not UTF-8 text"),
    row("make_ode_pairs", "over-long-prompt", [*ODE, "prompts={tmp}/long.txt"], None),
    row("make_ode_pairs", "resolution", [*ODE, "model.video.width=30"], "model.video.width=30 must be a positive"),
    row("make_ode_pairs", "unknown-option", [*ODE, "num_pair=3"], "Could not override 'num_pair'"),
    row("make_ode_pairs", "weights-folder", [*ODE, "teacher_ckpt={tmp}/weights"], "weights is incomplete: missing"),
    row("make_ode_pairs", "other-model-size", [*ODE, "teacher_ckpt={tmp}/small.pt"], "small.pt holds another", True),
    row("make_ode_pairs", "unwritable-output", [*ODE, "out={unwritable}/pairs"], "out={unwritable}/pairs: cannot"),
    # ----- encode_prompts ------------------------------------------------------------------------------
    row("encode_prompts", "missing-prompt-file", [*ENCODE, f"prompts={MISSING}"], "missing.txt: no such prompt file"),
    row("encode_prompts", "empty-prompt-file", [*ENCODE, f"prompts={EMPTY}"], "empty.txt holds no prompts"),
    row("encode_prompts", "binary-prompt-file", [*ENCODE, f"prompts={BINARY}"], "binary.txt is not UTF-8 text"),
    row("encode_prompts", "over-long-prompt", [*ENCODE, "prompts={tmp}/long.txt"], None),
    row("encode_prompts", "unknown-option", [*ENCODE, "prompts={tmp}/long.txt", "batch=2"], "'batch'"),
    row(
        "encode_prompts",
        "weights-folder",
        ["prompts={tmp}/long.txt", "text_encoder.encoder.path={tmp}/weights", "cache={tmp}/cache"],
        "weights is not a complete Wan2.1",
        True,
    ),  # fmt: skip
    row(
        "encode_prompts",
        "unwritable-output",
        [*ENCODE, "prompts={tmp}/long.txt", "cache={unwritable}/cache"],
        "cache={unwritable}/cache: cannot write",
    ),  # fmt: skip
]


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no new file can be created in, for this user."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    pytest.skip("no folder here refuses new files (root without /sys)")


def make_inputs(tmp_path: Path) -> dict:
    write_tiny_re_dmd(tmp_path, **TINY)  # TRAIN's {tmp}/conf, experiment=tiny
    (tmp_path / "empty.txt").write_text("\n   \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "long.txt").write_text(f"{LONG}\n")
    weights = tmp_path / "weights"  # a diffusers transformer folder and a Wan text-encoder folder, weights lost
    (weights / "text_encoder").mkdir(parents=True)
    (weights / "config.json").write_text("{}")
    (weights / "text_encoder" / "config.json").write_text('{"model_type": "umt5"}')
    small = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=12,
                                  out_channels=12, text_dim=64, freq_dim=16, ffn_dim=32, num_layers=2)  # fmt: skip
    torch.save(small.state_dict(), tmp_path / "small.pt")  # a Wan of width 16 with 2 blocks
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "clip.partial.mp4").symlink_to("/dev/full")
    return {"tmp": tmp_path, "unwritable": unwritable_folder(tmp_path)}


@pytest.mark.parametrize("entry, args, needle, debug", TABLE)
def test_bad_input(tmp_path, entry, args, needle, debug):
    row_args, paths = args, make_inputs(tmp_path)
    args = [a.format(**paths) for a in row_args]
    needle = needle.format(**paths) if needle else None
    before = set(files_under(tmp_path))
    folders = {p for p in tmp_path.rglob("*") if p.is_dir()}
    r = run_rf(entry, *args, runs=tmp_path)

    if needle is None:  # an over-long prompt: truncated with a warning naming how much
        assert r.returncode == 0, r.stderr[-3000:]
        warned = [line for line in r.stderr.splitlines() if "48 words, truncated to max_length=40" in line]
        assert warned and all(line.startswith("warning: ") for line in warned), r.stderr[-3000:]
        assert "error:" not in r.stderr
        return

    assert r.returncode == 2, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr[-3000:]
    left = [p for p in set(files_under(tmp_path)) - before if not p.name.endswith(".partial.mp4")]
    assert left == [], left
    assert {p for p in tmp_path.rglob("*") if p.is_dir()} <= folders, "a new folder was left"
    if entry == "generate" and "full" in needle:  # the writer's file went away, /dev/full stayed what it was
        assert not os.path.lexists(tmp_path / "full" / "clip.partial.mp4") and Path("/dev/full").is_char_device()

    if debug:  # the same inputs afresh (the full-disk row's symlink is gone)
        paths = make_inputs(tmp_path / "again")
        args = [a.format(**paths) for a in row_args]
        r = run_rf(entry, *args, "debug=true", runs=paths["tmp"])
        assert r.returncode != 0 and "Traceback (most recent call last)" in r.stderr, r.stderr[-3000:]
