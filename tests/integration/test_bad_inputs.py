"""Every entry point answers every bad input it can receive the same way (rf.utils.cli).

One table: entry point x case. A bad input exits with status 2 and one line on stderr, `error: ...`,
naming the offending value and what to do, leaves no file behind (the one documented exception, a
`NAME.partial.mp4` holding what a stream wrote before failing, does not arise here since each failure
happens before the first frame), and shows a traceback only with `traceback=true` (checked on a row of each
entry point). An over-long prompt is not an error: it is truncated, with a warning that says by how much.

How the harder cases are made, honestly and without root:
    unwritable output  a folder chmod 555; when the tests run as root (which ignores permissions), /sys,
                       whose top level no one may create files in
    full disk          NAME.partial.mp4, the file the video writer opens, is a symlink to /dev/full: every
                       write to it fails with ENOSPC from the kernel, as on a full disk (the first write,
                       the mp4 header, already does)

    damaged files      real files of each kind, made here and then damaged: a Wan checkpoint truncated to
                       half, emptied, replaced by text; an optimiser state or another network's weights where a
                       transformer is expected; a safetensors file and a diffusers folder's shard cut short; the
                       ODE-pair store make_ode_pairs wrote (fixture `store`) with its manifest cut, foreign or its
                       shard cut; a text-embedding cache's encoder.json cut or foreign; prompt files saved as
                       UTF-16 or Latin-1; videos emptied or replaced by text, a manifest of bytes; a YAML file that
                       does not parse (--config-dir)
    devices            a GPU on this CPU machine, an index past the last GPU, a name that is no device, more
                       trainer devices than GPUs (bf16 / FP8 on old GPUs: tests/unit/test_devices.py)
    toy prompts        a prompt outside the toy grammar on the toy model (strict_prompts=true, the default)

Cases an entry point cannot receive are left out: `bench` streams a random-weight model from a prompt
string (no prompt file, no weights, any length); `make_ode_pairs` solves a bidirectional teacher, for
which any length is whole (the student's chunking is checked when ODE init reads the pairs); the full
disk is staged for `generate` only, whose output path is fixed by `out=`.

Known gaps are rows marked xfail(strict=True), with the reason: such a row fails the suite once the gap
is closed, so that its mark goes too.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from rf.models.text_cache import CachedTextEncoder
from rf.toy.text import ToyTextEncoder
from rf.utils.video import write_video
from tests.cli import files_under, run_rf, write_tiny_re_dmd

WORDS = "a red circle moving fast to the right on a striped background"  # 12 words of the toy grammar
# 48 words, still a toy-grammar prompt (strict_prompts): five clauses of 8 words, 4 'and', 'on a striped background'
LONG = " and ".join(["a red circle moving fast to the right"] * 5) + " on a striped background"

# The tiny toy Re-DMD (tests.cli), a user's file next to rf's configs (--config-dir): one iteration, no videos.
TINY = dict(module={"max_iterations": 1}, callbacks={"video_log": None})
TRAIN = ["--config-dir={tmp}/conf", "experiment=tiny"]
ODE = ["teacher_ckpt=null", "num_pairs=1", "batch_size=1", "ode_steps=4", "latent_frames=3", "out={tmp}/pairs"]
ENCODE = ["model=toy", "cache={tmp}/cache"]
BENCH = ["model=toy", "clip_seconds=1", "stream_seconds=1", "repeats=1", "warmup_chunks=1", "minutes=[]"]
EVAL = ["model.video.height=16", "model.video.width=16", "toy_prompts=1", "seeds=1", "frames=15"]

MISSING, EMPTY, BINARY = "{tmp}/missing.txt", "{tmp}/empty.txt", "{tmp}/binary.txt"
UTF16, LATIN1, OFF_GRAMMAR = "{tmp}/utf16.txt", "{tmp}/latin1.txt", "{tmp}/dragon.txt"
DRAGON = "a purple dragon flying"  # outside the toy grammar: 2 (or, where purple is no toy colour, 3) unknown words
# A Wan of small.pt's size (width 16, 2 blocks), so that only the damage, not the size, can be wrong
SMALL = ["model.transformer.num_attention_heads=2", "model.transformer.attention_head_dim=8",
         "model.transformer.num_layers=2"]  # fmt: skip
BROKEN_YAML = ["--config-dir={tmp}/conf", "experiment=broken"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")


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
        ["prompts={tmp}/long.txt", "model.weights={tmp}/weights", "cache={tmp}/cache"],
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

# Damaged files, one row per (file kind x damage), each made by damaging a real file of its kind (make_inputs).
TABLE += [
    # ----- weights: torch.save checkpoints, safetensors files, diffusers folders ------------------------
    row(
        "generate",
        "truncated-checkpoint",
        ["ckpt={tmp}/truncated.pt"],
        "truncated.pt is damaged or not a checkpoint",
    ),  # fmt: skip
    row("generate", "empty-checkpoint", ["ckpt={tmp}/empty.pt"], "empty.pt is empty (0 bytes)"),
    row("generate", "not-a-checkpoint", ["ckpt={tmp}/notes.pt"], "notes.pt is damaged or not a checkpoint"),
    row("generate", "optimizer-checkpoint", ["ckpt={tmp}/optimizer.pt"], "optimizer.pt is a checkpoint of another"),
    row("generate", "vae-checkpoint", ["ckpt={tmp}/vae.pt"], "vae.pt is not a Wan transformer checkpoint"),
    row(
        "generate",
        "truncated-safetensors",
        ["ckpt={tmp}/truncated.safetensors"],
        "truncated.safetensors is damaged or not a safetensors file",
    ),  # fmt: skip
    row(
        "generate",
        "damaged-diffusers-shard",
        [*SMALL, "ckpt={tmp}/damaged_wan"],
        "damaged_wan holds damaged or incomplete weights",
    ),  # fmt: skip
    row(
        "train",
        "truncated-resume-checkpoint",
        [*TRAIN, "ckpt_path={tmp}/truncated.pt"],
        "truncated.pt is damaged or not a checkpoint",
    ),  # fmt: skip
    row(
        "train",
        "weights-as-resume-checkpoint",
        [*TRAIN, "ckpt_path={tmp}/small.pt"],
        "small.pt is a checkpoint of another kind, not a Lightning training checkpoint",
    ),  # fmt: skip
    # ----- the ODE-pair store (make_ode_pairs continues a store: it reads it first) ------------------
    row("make_ode_pairs", "truncated-manifest", [*ODE, "out={tmp}/pairs_manifest"], "manifest.json is not valid JSON"),
    row("make_ode_pairs", "foreign-manifest", [*ODE, "out={tmp}/pairs_foreign"], "is not an ODE-pair manifest"),
    row("make_ode_pairs", "truncated-shard", [*ODE, "out={tmp}/pairs_shard"], "fails its sha256 check"),
    # ----- the text-embedding cache ------------------------------------------------------------------
    row(
        "encode_prompts",
        "truncated-cache-meta",
        [*ENCODE, "prompts={tmp}/good.txt", "cache={tmp}/cache_meta"],
        "encoder.json is not valid JSON",
    ),  # fmt: skip
    row(
        "encode_prompts",
        "foreign-cache-meta",
        [*ENCODE, "prompts={tmp}/good.txt", "cache={tmp}/cache_foreign"],
        "encoder.json lacks identity",
    ),  # fmt: skip
    # ----- prompt files in another encoding ----------------------------------------------------------
    row("evaluate", "utf16-prompt-file", [*EVAL, f"prompts={UTF16}"], "utf16.txt is not UTF-8 text but UTF-16"),
    row("evaluate", "latin1-prompt-file", [*EVAL, f"prompts={LATIN1}"], "latin1.txt is not UTF-8 text"),
    row("encode_prompts", "latin1-prompt-file", [*ENCODE, f"prompts={LATIN1}"], "iconv -f LATIN1 -t UTF-8"),
    # ----- videos to evaluate ------------------------------------------------------------------------
    row("evaluate", "empty-video", ["videos={tmp}/videos_empty"], "is not a readable video"),
    row("evaluate", "not-a-video", ["videos={tmp}/videos_text"], "is not a readable video"),
    row("evaluate", "binary-video-manifest", ["videos={tmp}/videos_manifest"], "is not an rf evaluation manifest"),
    # ----- Hydra configs -----------------------------------------------------------------------------
    row("generate", "yaml-syntax-error", BROKEN_YAML, "broken.yaml is not valid YAML", True),
    row("train", "yaml-syntax-error", BROKEN_YAML, "broken.yaml is not valid YAML"),
]

# Devices and dtypes the machine lacks, checked before any work (these CPU-only rows skip on a GPU machine; bf16
# and FP8 on a GPU that cannot run them are staged in tests/unit/test_devices.py).
TABLE += [
    row("generate", "no-gpu", ["device=cuda"], "device=cuda: this machine has no CUDA GPU", marks=NO_GPU),
    row("generate", "gpu-index", ["device=cuda:99"], "device=cuda:99: this machine has"),
    row("generate", "not-a-device", ["device=gpu0"], "device=gpu0 is not a device: use auto, cpu, cuda or cuda:N"),
    row("evaluate", "no-gpu", [*EVAL, "device=cuda"], "device=cuda: this machine has no CUDA GPU", marks=NO_GPU),
    row("bench", "no-gpu", [*BENCH, "device=cuda"], "device=cuda: this machine has no CUDA GPU", marks=NO_GPU),
    row(
        "train",
        "no-gpu",
        [*TRAIN, "trainer=gpu"],
        "trainer.accelerator=gpu: this machine has no CUDA GPU",
        marks=NO_GPU,
    ),  # fmt: skip
    row("train", "more-gpus-than-exist", [*TRAIN, "trainer=gpu", "trainer.devices=64"], "this machine has"),
]

# Prompts the toy model cannot understand (strict_prompts=true, the default; false: tests below)
TABLE += [
    row(
        "generate",
        "off-grammar-prompt",
        [f'prompt="{DRAGON}"'],
        f"{DRAGON!r} is outside the toy grammar (unknown words ['dragon', 'flying'",
    ),  # fmt: skip
    row("generate", "off-grammar-summary", [f'prompt="{DRAGON}"'], "toy prompts read 'a <colour> <shape> [and a"),
    row(
        "generate",
        "off-grammar-schedule",
        ['schedule=[{{at:0,prompt:"a red circle moving"}}]'],
        "schedule: prompt 'a red circle moving' is outside the toy grammar (expected a speed",
    ),  # fmt: skip
    row("evaluate", "off-grammar-prompt-file", [*EVAL, f"prompts={OFF_GRAMMAR}"], "is outside the toy grammar"),
    row("train", "off-grammar-prompt-file", [*TRAIN, f"data.prompts={OFF_GRAMMAR}"], "is outside the toy grammar"),
    row("make_ode_pairs", "off-grammar-prompt-file", [*ODE, f"prompts={OFF_GRAMMAR}"], "is outside the toy grammar"),
    row("encode_prompts", "off-grammar-prompt-file", [*ENCODE, f"prompts={OFF_GRAMMAR}"], "strict_prompts=false"),
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


def damage(path: Path, how: str) -> None:
    """Damage a real file in place: keep the first half of its bytes, or none."""
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b""}[how])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A real ODE-pair store, written by make_ode_pairs with ODE's settings (rows copy it, then damage the copy)."""
    root = tmp_path_factory.mktemp("store")
    r = run_rf("make_ode_pairs", *[a.format(tmp=root) for a in ODE], runs=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "pairs"


def make_inputs(tmp_path: Path, store: Path) -> dict:
    write_tiny_re_dmd(tmp_path, **TINY)  # TRAIN's {tmp}/conf, experiment=tiny
    (tmp_path / "conf" / "experiment" / "broken.yaml").write_text("model:\n  video: {height: 16\n  width: [\n")
    (tmp_path / "empty.txt").write_text("\n   \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "long.txt").write_text(f"{LONG}\n")
    (tmp_path / "good.txt").write_text(f"{WORDS}\n\n")
    (tmp_path / "utf16.txt").write_text(f"{WORDS}\n", encoding="utf-16")  # with its byte-order mark, as editors save
    (tmp_path / "latin1.txt").write_text(
        f"{WORDS}\na red circle moving fast on a café background\n", encoding="latin-1"
    )
    (tmp_path / "dragon.txt").write_text(f"{WORDS}\n{DRAGON}\n")
    weights = tmp_path / "weights"  # a diffusers transformer folder and a Wan text-encoder folder, weights lost
    (weights / "text_encoder").mkdir(parents=True)
    (weights / "config.json").write_text("{}")
    (weights / "text_encoder" / "config.json").write_text('{"model_type": "umt5"}')
    small = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=12,
                                  out_channels=12, text_dim=64, freq_dim=16, ffn_dim=32, num_layers=2)  # fmt: skip
    torch.save(small.state_dict(), tmp_path / "small.pt")  # a Wan of width 16 with 2 blocks
    for name in ("truncated.pt", "empty.pt"):
        shutil.copy(tmp_path / "small.pt", tmp_path / name)
        damage(tmp_path / name, name.split(".")[0].replace("truncated", "truncate"))
    (tmp_path / "notes.pt").write_text("not a checkpoint: notes a user saved with the wrong name\n")
    torch.save(torch.optim.AdamW(small.parameters()).state_dict(), tmp_path / "optimizer.pt")  # no weights at all
    encoder = torch.nn.Conv3d(3, 12, 2)  # the weights of another network: an autoencoder's first layer
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, tmp_path / "vae.pt")
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, tmp_path / "truncated.safetensors")
    damage(tmp_path / "truncated.safetensors", "truncate")
    small.save_pretrained(tmp_path / "damaged_wan")  # a diffusers folder whose one shard is cut short
    damage(tmp_path / "damaged_wan" / "diffusion_pytorch_model.safetensors", "truncate")

    for name, change in (("manifest", "truncate"), ("foreign", "foreign"), ("shard", "shard")):
        copy = shutil.copytree(store, tmp_path / f"pairs_{name}")
        if change == "truncate":
            damage(copy / "manifest.json", "truncate")
        elif change == "foreign":
            (copy / "manifest.json").write_text('{"version": 1, "files": ["a.bin"]}')
        else:
            damage(copy / "shard_00000.safetensors", "truncate")
    CachedTextEncoder(tmp_path / "cache_meta", encoder=ToyTextEncoder())([WORDS])  # a real cache, one entry
    shutil.copytree(tmp_path / "cache_meta", tmp_path / "cache_foreign")
    damage(tmp_path / "cache_meta" / "encoder.json", "truncate")
    (tmp_path / "cache_foreign" / "encoder.json").write_text('{"version": 1, "model": "umt5"}')

    clip = f"{WORDS}-0.mp4"  # a real video of 15 frames, named as evaluate's videos= reads prompts from names
    for name in ("empty", "text", "manifest"):
        (tmp_path / f"videos_{name}").mkdir()
        write_video(tmp_path / f"videos_{name}" / clip, torch.zeros(3, 15, 16, 16), fps=8)
    damage(tmp_path / "videos_empty" / clip, "empty")
    (tmp_path / "videos_text" / clip).write_text("not a video\n")
    (tmp_path / "videos_manifest" / "manifest.json").write_bytes(bytes(range(256)))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "clip.partial.mp4").symlink_to("/dev/full")
    return {"tmp": tmp_path, "unwritable": unwritable_folder(tmp_path)}


@pytest.mark.parametrize("entry, args, needle, debug", TABLE)
def test_bad_input(tmp_path, store, entry, args, needle, debug):
    row_args, paths = args, make_inputs(tmp_path, store)
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
        paths = make_inputs(tmp_path / "again", store)
        args = [a.format(**paths) for a in row_args]
        r = run_rf(entry, *args, "traceback=true", runs=paths["tmp"])
        assert r.returncode != 0 and "Traceback (most recent call last)" in r.stderr, r.stderr[-3000:]


def test_off_grammar_prompt_streams_with_a_warning_when_not_strict(tmp_path):
    """strict_prompts=false: the prompt streams (the toy encoder reads the unknown words as <unk>), with a warning
    that names them."""
    out = tmp_path / "dragon.mp4"
    r = run_rf("generate", f'prompt="{DRAGON}"', "strict_prompts=false", "frames=3", f"out={out}", runs=tmp_path)
    assert r.returncode == 0 and out.is_file(), r.stderr[-3000:]
    warned = [line for line in r.stderr.splitlines() if "is outside the toy grammar" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: prompt: "), r.stderr[-3000:]
    assert "unknown words ['dragon', 'flying'" in warned[0] and "streamed anyway" in warned[0]
    assert "error:" not in r.stderr
