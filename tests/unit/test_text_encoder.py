"""UMT5TextEncoder on a tiny random umT5 in a Wan-style folder: shapes, zero padding, parity, errors, dtype."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from rf.models.text import TextEncoder, UMT5TextEncoder

WORDS = "a red blue green circle square triangle moving fast slowly left right on striped dotted background".split()


def make_tiny_umt5(folder, seed: int = 0):
    """A Wan2.1-style diffusers folder with a random 2-layer umT5 (d_model 16) and a word-level tokenizer."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])  # T5's EOS
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder / "tokenizer")
    config = UMT5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    UMT5EncoderModel(config).save_pretrained(folder / "text_encoder")
    return folder


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    return make_tiny_umt5(tmp_path_factory.mktemp("wan"))


PROMPTS = ["a red circle moving fast", "blue square", "a green triangle moving slowly left on a dotted background"]


def test_shape_zero_padding_and_parity_with_transformers(wan):
    enc = UMT5TextEncoder(wan, dtype="fp32", max_length=24)
    assert isinstance(enc, TextEncoder) and enc.dim == 16 and enc.max_length == 24
    out = enc(PROMPTS)
    assert out.shape == (3, 24, 16) and out.dtype == torch.float32
    model = UMT5EncoderModel.from_pretrained(wan / "text_encoder", dtype=torch.float32, local_files_only=True).eval()
    for b, prompt in enumerate(PROMPTS):
        n = len(prompt.split()) + 1  # words + EOS
        assert out[b, :n].abs().sum(-1).gt(0).all()
        assert torch.equal(out[b, n:], torch.zeros(24 - n, 16))  # exact zeros, as WanPipeline pads
        ids = torch.tensor([[3 + WORDS.index(w) for w in prompt.split()] + [1]])  # [1, n] real tokens only
        with torch.no_grad():
            direct = model(ids).last_hidden_state[0]  # [n, D]
        torch.testing.assert_close(out[b, :n], direct, rtol=1e-5, atol=1e-6)


def test_default_length_is_512_and_prompts_are_cleaned(wan):
    enc = UMT5TextEncoder(wan, dtype="fp32")
    out = enc(["  a   red\ncircle &amp; "])  # whitespace squashed, HTML unescaped: "a red circle &"
    assert out.shape == (1, 512, 16)
    assert torch.equal(out, enc(["a red circle &"]))


def test_frozen_and_stays_in_eval(wan):
    enc = UMT5TextEncoder(wan, dtype="fp32", max_length=8)
    enc.train()  # as Lightning does to the whole module: umT5's dropout must stay off
    assert not enc.training and not enc.model.training
    assert not any(p.requires_grad for p in enc.parameters())
    assert torch.equal(enc(["red circle"]), enc(["red circle"]))


def test_truncation_warns_with_the_dropped_count(wan):
    enc = UMT5TextEncoder(wan, dtype="fp32", max_length=4)
    with pytest.warns(UserWarning, match="10 tokens: 6 dropped past max_length=4"):
        out = enc(["a red circle moving fast on a striped background", "blue"])
    assert out.shape == (2, 4, 16) and out[0].abs().sum(-1).gt(0).all()


def test_bf16_from_a_string(wan):
    enc = UMT5TextEncoder(wan, dtype="bf16", max_length=8)
    assert {p.dtype for p in enc.parameters()} == {torch.bfloat16}
    assert enc(["red circle"]).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'int8'"):
        UMT5TextEncoder(wan, dtype="int8")


@pytest.mark.parametrize(
    "remove, needle",
    [
        ("text_encoder/config.json", "text_encoder/config.json"),
        (
            "text_encoder/model.safetensors",
            "text_encoder/model.safetensors or text_encoder/model.safetensors.index.json",
        ),
        ("tokenizer/tokenizer.json", "tokenizer/tokenizer.json or tokenizer/spiece.model"),
        ("tokenizer/tokenizer_config.json", "tokenizer/tokenizer_config.json"),
    ],
)
def test_missing_files_are_listed_before_loading(wan, tmp_path, remove, needle):
    broken = tmp_path / "wan"
    shutil.copytree(wan, broken)
    (broken / remove).unlink()
    with pytest.raises(FileNotFoundError, match="missing") as err:
        UMT5TextEncoder(broken)
    assert needle in str(err.value) and "not a complete Wan2.1 diffusers folder" in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        UMT5TextEncoder(tmp_path / "nowhere")


def test_identity_changes_with_dtype_and_length(wan):
    a = UMT5TextEncoder(wan, dtype="fp32", max_length=8)
    assert a.identity == UMT5TextEncoder(wan, dtype="fp32", max_length=8).identity
    assert a.identity != UMT5TextEncoder(wan, dtype="bf16", max_length=8).identity
    assert a.identity != UMT5TextEncoder(wan, dtype="fp32", max_length=9).identity


def test_a_missing_shard_of_a_sharded_checkpoint_is_named(wan, tmp_path):
    broken = tmp_path / "wan"
    shutil.copytree(wan, broken)
    (broken / "text_encoder" / "model.safetensors").unlink()
    shards = {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}
    (broken / "text_encoder" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    (broken / "text_encoder" / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"missing text_encoder/model-00002-of-00002\.safetensors \("):
        UMT5TextEncoder(broken)
