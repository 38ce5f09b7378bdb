"""`python -m rf.encode_prompts`: fills the cache, a second run skips everything, bad prompt files give one line."""

from __future__ import annotations

import pytest
import torch

from rf.models.text_cache import WAN_NEGATIVE_PROMPT, CachedTextEncoder, EmbeddingCache
from rf.toy.text import ToyTextEncoder
from tests.cli import files_under, run_rf
from tests.unit.test_text_encoder import make_tiny_umt5

LINES = [
    "a red circle moving fast to the left on a striped background",
    "a blue square moving slowly upwards on a dotted background",
    "a green triangle moving fast downwards on a checkered background",
]


def one_line_error(r) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_fills_the_cache_then_skips_it(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(LINES) + "\n\n")
    cache = tmp_path / "cache" / "toy"  # the default, ${paths.cache}/toy, made on demand
    r = run_rf("encode_prompts", f"prompts={prompts}", "model=toy", "batch_size=2", runs=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "encoded 3 prompts" in r.stdout
    stored = [p for p in files_under(cache) if p.suffix == ".safetensors"]
    assert len(stored) == 3 and not list(cache.rglob("*.tmp"))
    reader = CachedTextEncoder(cache, negative_prompt=None)
    # the cache holds what the encoder gave in batch_size=2 batches, bit for bit: the same batches here (a batch of
    # another size may take another matmul kernel, whose float32 sums differ in the last place)
    toy = ToyTextEncoder()
    assert torch.equal(reader(LINES), torch.cat([toy(LINES[:2]), toy(LINES[2:])]))

    r = run_rf("encode_prompts", f"prompts={prompts}", "model=toy", runs=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "all 3 prompts already cached" in r.stdout

    new = "a red square moving slowly to the right on a gradient background"
    prompts.write_text("\n".join([*LINES, new]))  # one new line: only it is encoded
    r = run_rf("encode_prompts", f"prompts={prompts}", "model=toy", f"cache={cache}", "verify=true", runs=tmp_path)
    assert r.returncode == 0 and "encoded 1 prompts, 3 were cached" in r.stdout, r.stderr


def test_umt5_folder_and_the_wan_negative_prompt(tmp_path):
    wan = make_tiny_umt5(tmp_path / "wan")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(LINES))
    cache = tmp_path / "cache"
    overrides = [f"model.weights={wan}", "model.text_encoder_online.encoder.max_length=16", "device=cpu"]
    r = run_rf("encode_prompts", f"prompts={prompts}", f"cache={cache}", *overrides, runs=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "encoded 4 prompts" in r.stdout  # three lines and Wan's negative prompt
    reader = CachedTextEncoder(cache)
    assert reader.cache.dtype == torch.bfloat16 and reader.max_length == 16 and reader.dim == 16
    assert WAN_NEGATIVE_PROMPT in EmbeddingCache(cache) and reader.negative().shape == (1, 16, 16)
    assert reader(LINES).shape == (3, 16, 16)


@pytest.mark.parametrize("content, needle", [(None, "no such prompt file"), ("\n  \n", "holds no prompts")])
def test_missing_or_empty_prompt_file_gives_one_line(tmp_path, content, needle):
    prompts = tmp_path / "prompts.txt"
    if content is not None:
        prompts.write_text(content)
    r = run_rf("encode_prompts", f"prompts={prompts}", "model=toy", f"cache={tmp_path / 'cache'}", runs=tmp_path)
    assert needle in one_line_error(r)
    assert not (tmp_path / "cache").exists()


def test_prompts_are_required(tmp_path):
    r = run_rf("encode_prompts", "model=toy", runs=tmp_path)
    assert "prompts=FILE is required" in one_line_error(r)
