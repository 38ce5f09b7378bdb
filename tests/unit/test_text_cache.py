"""EmbeddingCache and CachedTextEncoder: exact round trips, clear misses, atomic writes, corruption, negatives."""

from __future__ import annotations

import json

import pytest
import torch

from rf.models.text import TextEncoder, UMT5TextEncoder
from rf.models.text_cache import (
    META,
    WAN_NEGATIVE_PROMPT,
    CachedTextEncoder,
    CorruptEntryError,
    EmbeddingCache,
    encoder_identity,
)
from rf.toy.text import ToyTextEncoder
from tests.unit.test_text_encoder import make_tiny_umt5

PROMPTS = ["a red circle moving fast", "a blue square moving slowly upwards", "a red circle moving fast"]


class Counting(torch.nn.Module):
    """Wraps an encoder and records every batch it is asked to encode."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []
        self.dim, self.max_length, self.identity = inner.dim, inner.max_length, encoder_identity(inner)

    def forward(self, prompts):
        self.calls.append(list(prompts))
        return self.inner(prompts)


def stored_files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META)


def test_round_trip_equals_the_encoder_exactly(tmp_path):
    toy = ToyTextEncoder()
    # The writer encodes each distinct prompt once, in one batch: the same call here gives the same bits (a batch
    # of another size may take another matmul kernel, whose float32 sums differ in the last place).
    direct = toy(PROMPTS[:2])[[0, 1, 0]]  # [3, 40, 64]
    writer = CachedTextEncoder(tmp_path / "cache", encoder=toy)
    assert isinstance(writer, TextEncoder) and (writer.dim, writer.max_length) == (64, 40)
    assert torch.equal(writer(PROMPTS), direct)  # misses: encoded, stored, returned
    reader = CachedTextEncoder(tmp_path / "cache")  # no encoder: dim, length and dtype come from the folder
    assert (reader.dim, reader.max_length) == (64, 40)
    assert torch.equal(reader(PROMPTS), direct)
    assert len(stored_files(tmp_path / "cache")) == 2  # the repeated prompt is stored once
    tokens = EmbeddingCache(tmp_path / "cache").get(PROMPTS[0])
    assert tokens.shape == (5, 64)  # only the real tokens are on disk


def test_umt5_round_trip_in_bf16(tmp_path):
    umt5 = UMT5TextEncoder(make_tiny_umt5(tmp_path / "wan"), dtype="bf16", max_length=16)
    # each prompt is encoded alone below (the second call finds the first in the cache): the same calls here
    direct = torch.cat([umt5(["red circle"]), umt5(["a blue square moving fast"])])  # [2, 16, D] bf16
    CachedTextEncoder(tmp_path / "cache", encoder=umt5)(["red circle"])
    cached = CachedTextEncoder(tmp_path / "cache", encoder=umt5)(["red circle", "a blue square moving fast"])
    assert cached.dtype == torch.bfloat16 and torch.equal(cached, direct)
    assert torch.equal(CachedTextEncoder(tmp_path / "cache")(["a blue square moving fast"]), direct[1:])


def test_a_cache_refuses_another_dtype_or_encoder(tmp_path):
    toy = ToyTextEncoder()
    out = CachedTextEncoder(tmp_path / "cache", encoder=toy, dtype="bf16")(PROMPTS[:1])
    assert out.dtype == torch.bfloat16 and torch.equal(out, toy(PROMPTS[:1]).bfloat16())
    with pytest.raises(ValueError, match="dtype='bfloat16'.*'float32'.*another cache folder"):
        CachedTextEncoder(tmp_path / "cache", encoder=toy, dtype="fp32")
    with pytest.raises(ValueError, match="identity="):
        CachedTextEncoder(tmp_path / "cache", encoder=ToyTextEncoder(seed=1), dtype="bf16")


def test_a_miss_without_encoder_names_the_prompt_and_the_command(tmp_path):
    CachedTextEncoder(tmp_path / "cache", encoder=ToyTextEncoder())(PROMPTS[:1])
    reader = CachedTextEncoder(tmp_path / "cache")
    with pytest.raises(FileNotFoundError) as err:
        reader([PROMPTS[0], "a green triangle"])
    message = str(err.value)
    assert "1 of 2 prompts" in message and "'a green triangle'" in message
    assert "python -m rf.encode_prompts" in message and str(tmp_path / "cache") in message
    with pytest.raises(FileNotFoundError, match="holds no prompt embeddings.*rf.encode_prompts"):
        CachedTextEncoder(tmp_path / "empty")


def test_writes_are_atomic_and_strays_are_removed(tmp_path):
    writer = CachedTextEncoder(tmp_path / "cache", encoder=ToyTextEncoder())
    writer(PROMPTS)
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    stray = writer.cache.path(PROMPTS[0]).with_name("dead.safetensors.12345.tmp")  # a killed writer's leftover
    stray.write_bytes(b"half")
    assert writer.cache.remove_strays() == 1 and not stray.exists()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corruption_is_reported_or_re_encoded(tmp_path, damage):
    toy = ToyTextEncoder()
    CachedTextEncoder(tmp_path / "cache", encoder=toy)(PROMPTS[:1])
    path = EmbeddingCache(tmp_path / "cache").path(PROMPTS[0])
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0xFF  # a bit flip in the tensor: the header still parses
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptEntryError, match="is corrupted.*delete it and refill.*rf.encode_prompts"):
        CachedTextEncoder(tmp_path / "cache")(PROMPTS[:1])
    with pytest.warns(UserWarning, match="encoding it again"):
        out = CachedTextEncoder(tmp_path / "cache", encoder=toy)(PROMPTS[:1])
    assert torch.equal(out, toy(PROMPTS[:1]))
    assert torch.equal(CachedTextEncoder(tmp_path / "cache")(PROMPTS[:1]), out)  # the damaged file was replaced


def test_negative_prompt_is_encoded_once(tmp_path):
    toy = ToyTextEncoder(vocabulary=["red", "circle", "ugly", "static"])
    counting = Counting(toy)
    cached = CachedTextEncoder(tmp_path / "cache", encoder=counting, negative_prompt="ugly static")
    first = cached.negative()
    assert first.shape == (1, 40, 64) and torch.equal(first, toy(["ugly static"]))
    assert torch.equal(cached.negative(), first)
    assert counting.calls == [["ugly static"]]
    again = CachedTextEncoder(tmp_path / "cache", encoder=counting, negative_prompt="ugly static")
    assert torch.equal(again.negative(), first) and len(counting.calls) == 1  # read from disk, not encoded
    reader = CachedTextEncoder(tmp_path / "cache", negative_prompt="ugly static")
    assert torch.equal(reader.negative(), first)


def test_no_negative_prompt_is_all_zeros_and_wan_is_the_default(tmp_path):
    cached = CachedTextEncoder(tmp_path / "cache", encoder=ToyTextEncoder(), negative_prompt=None)
    assert torch.equal(cached.negative(), torch.zeros(1, 40, 64))
    assert CachedTextEncoder(tmp_path / "cache").negative_prompt == WAN_NEGATIVE_PROMPT
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝，静态") and WAN_NEGATIVE_PROMPT.endswith("倒着走")


def test_identity_separates_encoders_and_is_in_the_folder(tmp_path):
    a, b = ToyTextEncoder(seed=0), ToyTextEncoder(seed=1)
    assert encoder_identity(a) == encoder_identity(ToyTextEncoder(seed=0)) != encoder_identity(b)
    reordered = ToyTextEncoder(vocabulary=["circle", "red"])  # same tables, other word -> row map
    assert encoder_identity(reordered) != encoder_identity(ToyTextEncoder(vocabulary=["red", "circle"]))
    CachedTextEncoder(tmp_path / "cache", encoder=a)(PROMPTS[:1])
    assert json.loads((tmp_path / "cache" / META).read_text())["identity"] == encoder_identity(a)


def test_outputs_follow_the_module_device_and_bad_input_is_refused(tmp_path):
    cached = CachedTextEncoder(tmp_path / "cache", encoder=ToyTextEncoder())
    assert cached(PROMPTS[:1]).device == torch.device("cpu")
    with pytest.raises(ValueError, match="non-empty list"):
        cached("a red circle")
    with pytest.raises(ValueError, match="expected"):
        cached.cache.put("x", torch.zeros(41, 64))
