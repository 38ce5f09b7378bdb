"""A tiny random VideoReward, laid out like the release, for tests that must load through the real path.

`build_tiny_videoreward(root)` writes
    root/Qwen2-VL-2B-Instruct/  a Qwen2-VL-style base: config.json + weights (hidden 32, 2 layers, a
        1-block vision tower with 4 px patches), a byte-level BPE tokenizer with Qwen2-VL's special tokens
        and chat format, preprocessor_config.json
    root/VideoReward/  model_config.json (naming the hub id as the release does) + checkpoint-1/ as
        VideoAlign's trainer saves it: keys in the pre-4.52 transformers layout, LoRA either as
        adapter_model.safetensors + non_lora_state_dict.pth (layout="lora") or inside one model.pth ("full")
and returns the VideoReward folder. Nothing is downloaded; a build takes a fraction of a second.

Weights are drawn larger than a fresh init (std 0.2) so that pixels and prompts visibly move the scores,
and LoRA B is non-zero so that the adapter matters.
"""

import json
from pathlib import Path

import safetensors.torch
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration

from rf.rewards.videoalign import PROMPT, REWARD_TOKENS

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
QWEN_SPECIAL += ["<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL-Instruct's chat format, reduced to what VideoAlign sends: a user turn of video + text.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The released statistics (KwaiVGI/VideoReward model_config.json, inference_config).
INFERENCE_CONFIG = {"VQ_mean": 3.6757, "VQ_std": 2.2476, "MQ_mean": 1.1646, "MQ_std": 1.3811}
INFERENCE_CONFIG |= {"TA_mean": 2.8105, "TA_std": 2.5121}
PATCH = 4
BASE_NAME = "Qwen2-VL-2B-Instruct"  # the base sits beside VideoReward/, as conf/reward/videoalign.yaml expects


def _tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the judge's own prompt: any text tokenizes, the prompt in ~1.3k tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=QWEN_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([PROMPT], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _base_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2VLForConditionalGeneration:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer) + 13,  # padded past the tokenizer, as Qwen2-VL-2B's 151936 rows
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
            initializer_range=0.2,
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config=dict(
            depth=1,
            embed_dim=16,
            hidden_size=32,
            num_heads=2,
            mlp_ratio=2,
            patch_size=PATCH,
            spatial_merge_size=2,
            temporal_patch_size=2,
            initializer_range=0.2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    return Qwen2VLForConditionalGeneration(config).eval()


def _released_key(key: str) -> str:
    """Current transformers layout -> the one VideoAlign's checkpoints were saved in (its inverse is
    videoalign._current_key)."""
    for new, old in (
        ("base_model.model.model.visual.", "base_model.model.visual."),
        ("base_model.model.model.language_model.", "base_model.model.model."),
    ):
        if key.startswith(new):
            return old + key[len(new) :]
    return key


def build_tiny_videoreward(
    root: str | Path, layout: str = "lora", output_dim: int = 1, seed: int = 0, lora_r: int = 4
) -> Path:
    """Write a tiny base + VideoReward folder under root (see the module docstring); returns the latter."""
    root = Path(root)
    base, folder = root / BASE_NAME, root / "VideoReward"
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    vlm = _base_model(tokenizer)
    vlm.save_pretrained(base)
    tokenizer.save_pretrained(base)
    pre = dict(min_pixels=PATCH * PATCH * 4, max_pixels=PATCH * PATCH * 4 * 256, patch_size=PATCH)
    pre |= dict(temporal_patch_size=2, merge_size=2, image_processor_type="Qwen2VLImageProcessor")
    pre |= dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    (base / "preprocessor_config.json").write_text(json.dumps(pre | {"processor_class": "Qwen2VLProcessor"}))

    # What VideoAlign's training leaves behind: reward tokens appended, LoRA on the language model, rm_head.
    tokenizer.add_tokens(list(REWARD_TOKENS), special_tokens=True)
    vlm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    vlm.get_input_embeddings().weight.data[-len(REWARD_TOKENS) :].normal_(0, 0.2)
    exclude = ["lm_head", "rm_head", "embed_tokens", "visual"]
    targets = [n for n, m in vlm.named_modules() if isinstance(m, torch.nn.Linear) and not any(x in n for x in exclude)]
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.05, target_modules=targets, bias="none")
    peft_model = get_peft_model(vlm, lora)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)
    state = {_released_key(k): v.clone() for k, v in peft_model.state_dict().items()}
    state["base_model.model.rm_head.weight"] = torch.randn(output_dim, 32)

    ckpt = folder / "checkpoint-1"
    ckpt.mkdir(parents=True)
    if layout == "full":
        torch.save(state, ckpt / "model.pth")
    elif layout == "lora":
        adapter = {k.replace(".default.", "."): v for k, v in state.items() if "lora_" in k}
        safetensors.torch.save_file(adapter, ckpt / "adapter_model.safetensors")
        lora.save_pretrained(ckpt)  # adapter_config.json, as peft's save_pretrained writes it
        trained = ("base_model.model.rm_head.weight", "base_model.model.model.embed_tokens.weight")
        torch.save({k: state[k] for k in trained}, ckpt / "non_lora_state_dict.pth")
    else:
        raise ValueError(f"layout {layout!r} is not 'lora' or 'full'")

    model_config = {
        "data_config": dict(max_frame_pixels=PATCH * PATCH * 4 * 256, num_frames=None, fps=2.0, sample_type="uniform"),
        "model_config": dict(
            model_name_or_path="Qwen/Qwen2-VL-2B-Instruct", output_dim=output_dim, use_special_tokens=True
        ),
        "peft_lora_config": dict(lora_enable=True, vision_lora=False, lora_r=lora_r, lora_alpha=2 * lora_r),
        "inference_config": dict(INFERENCE_CONFIG),
    }
    model_config["data_config"] |= dict(eval_dim=["VQ", "MQ", "TA"], prompt_template_type="detailed_special")
    model_config["model_config"] |= dict(reward_token="special", torch_dtype="bfloat16")
    model_config["peft_lora_config"] |= dict(lora_dropout=0.05, lora_namespan_exclude=exclude, num_lora_modules=-1)
    model_config["peft_lora_config"] |= dict(lora_task_type="CAUSAL_LM", use_rslora=False, lora_modules_to_save=None)
    (folder / "model_config.json").write_text(json.dumps(model_config, indent=4))
    return folder
