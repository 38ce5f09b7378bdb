"""VideoReward (VideoAlign, Liu et al. 2025) as a Re-DMD reward: a Qwen2-VL-2B judge that scores a video.

The paper's reward. VideoAlign fine-tunes Qwen2-VL-2B-Instruct with LoRA and adds three special tokens,
<|VQ_reward|> <|MQ_reward|> <|TA_reward|>, to a fixed prompt (its "detailed_special" template). A bias-free
linear `rm_head` reads the last hidden state at each of them: visual quality, motion quality, text
alignment. Each is z-scored with the mean/std in the checkpoint's model_config.json (`inference_config`),
as VideoAlign's `inference.py` does with use_norm=True, and the reward is one head (MQ by default, the
motion signal Reward Forcing needs) or a weighted sum of z-scored heads (VideoAlign's "Overall" is all 1s).

A released checkpoint folder (HF KwaiVGI/VideoReward; read like VideoAlign's `load_model_from_checkpoint`):
    model_config.json                       data_config / model_config / peft_lora_config / inference_config
    checkpoint-<step>/model.pth             the whole PEFT model's state dict, or else
    checkpoint-<step>/adapter_model.safetensors + non_lora_state_dict.pth   LoRA + rm_head and embeddings
The base model is not in it (model_config names the hub id Qwen/Qwen2-VL-2B-Instruct): pass `base_path`.

Where this differs from the released code, and why:
- Pixels. The released reward code fed videos in [-1, 1] times 255 to the processor, which rescales by
  1/255 itself: the judge saw [-1, 1] where it was trained on [0, 1], everything below mid-grey below
  black. Here [-1, 1] -> [0, 255] uint8, the decoded-mp4 range VideoAlign trained on, then 1/255 and the
  CLIP mean/std, as Qwen2VLVideoProcessor does.
- Vision preprocessing is written out (rescale, normalise, patchify, one <|video_pad|> per merged patch)
  because transformers' video processor needs torchvision, which this project does not depend on.
- Frames come from a tensor, not an mp4: chosen like VideoAlign's `smart_nframes` (fps=2 of `video_fps`)
  and resized to `frame_size`; 336x588 is what its smart_resize (max_frame_pixels 200704) gives 480x832.
- Checkpoint keys use the pre-4.52 transformers layout and are mapped to the current one.
- rm_head is applied to the three reward-token states only: same numbers as the full [B, L] logits.
Note: current transformers starts the text after a video at +max(h, w) (merged patches) positions, where
VideoAlign's version used max(t, h, w); they agree up to 2 * 21 = 42 sampled frames at 336x588.
"""

import ast
import json
import math
import re
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

from rf.utils.instantiate import pick_device, resolve_dtype

HEADS = ("VQ", "MQ", "TA")
REWARD_TOKENS = tuple(f"<|{h}_reward|>" for h in HEADS)
VIDEO_PAD = "<|video_pad|>"
# PROMPT, the judge's instruction, is at the end of this file.


def sample_frame_indices(total: int, video_fps: float, fps: float = 2.0, num_frames: int | None = None) -> list[int]:
    """VideoAlign's uniform sampling (vision_process.smart_nframes): `fps` frames per second of a clip
    recorded at `video_fps`, at least 4, at most 768, an even count; or `num_frames` when given."""

    def even(x: float) -> int:
        return round(x / 2) * 2  # Python's round, as VideoAlign's round_by_factor

    if num_frames is not None:
        n = even(num_frames)
    else:
        n = even(min(max(total / video_fps * fps, 4), math.floor(min(768, total) / 2) * 2))
    n = min(n, total)
    if n < 2:
        raise ValueError(f"{total} frames: VideoAlign needs at least 2")
    return torch.linspace(0, total - 1, n).round().long().tolist()


def _find_checkpoint(folder: Path, cfg_file: Path, step: int | None) -> tuple[Path, list[Path]]:
    """The checkpoint-<step> folder (latest unless `step`) and its weight files; errors before any loading."""
    steps = sorted((int(p.name.split("-")[-1]), p) for p in folder.glob("checkpoint-*") if p.name[11:].isdigit())
    if not steps:
        raise FileNotFoundError(
            f"VideoReward folder {folder} has no checkpoint-<step>/ folder (next to {cfg_file.name})"
        )
    if step is not None and step not in dict(steps):
        raise FileNotFoundError(f"VideoReward folder {folder} has no checkpoint-{step}/ (has {[s for s, _ in steps]})")
    ckpt = dict(steps)[step] if step is not None else steps[-1][1]
    if (ckpt / "model.pth").is_file():
        return ckpt, [ckpt / "model.pth"]
    files = [ckpt / "adapter_model.safetensors", ckpt / "non_lora_state_dict.pth"]
    if missing := [f.name for f in files if not f.is_file()]:
        raise FileNotFoundError(f"VideoReward checkpoint {ckpt} lacks model.pth and {', '.join(missing)}")
    return ckpt, files


def _current_key(key: str, known: set[str]) -> str:
    """Map a state-dict key of the PEFT model from the transformers layout VideoAlign saved with (<4.52:
    `model.layers`, `visual` at the top) to the current one (`model.language_model`, `model.visual`)."""
    if key in known:
        return key
    for old, new in (
        ("base_model.model.visual.", "base_model.model.model.visual."),
        ("base_model.model.model.", "base_model.model.model.language_model."),
    ):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


class VideoAlignReward(torch.nn.Module):
    name = "videoalign"  # per instance: videoalign_<head> or videoalign_mix

    def __init__(
        self,
        path: str,
        base_path: str | None = None,
        head: str = "MQ",
        heads: dict[str, float] | None = None,
        dtype: str | torch.dtype = "bf16",
        frame_size: tuple[int, int] = (336, 588),
        video_fps: float = 16.0,
        fps: float | None = None,
        num_frames: int | None = None,
        checkpoint_step: int | None = None,
        device: str = "cpu",
        attn_implementation: str = "sdpa",
    ):
        """path: a VideoReward folder; base_path: the Qwen2-VL-2B-Instruct folder (default: model_config's
        model_name_or_path if that is a local folder); heads: weights of z-scored heads, else `head` alone;
        frame_size: (H, W) the frames are resized to; video_fps: the rate the rollouts play at; fps /
        num_frames: frame sampling, default model_config's data_config (VideoAlign: 2 fps); device: where it
        loads ("auto": the GPU if any); RewardCallback moves it to the training device at setup anyway."""
        super().__init__()
        folder, cfg_file = Path(path), Path(path) / "model_config.json"
        if not folder.is_dir():
            raise FileNotFoundError(f"VideoReward folder {folder} does not exist")
        if not cfg_file.is_file():
            raise FileNotFoundError(f"VideoReward folder {folder} lacks model_config.json")
        cfg = json.loads(cfg_file.read_text())
        ckpt, files = _find_checkpoint(folder, cfg_file, checkpoint_step)
        data, model_cfg, lora_cfg = cfg.get("data_config", {}), cfg["model_config"], cfg["peft_lora_config"]
        norm = cfg.get("inference_config") or {}
        if missing := [f"{h}_{s}" for h in HEADS for s in ("mean", "std") if f"{h}_{s}" not in norm]:
            raise ValueError(f"{cfg_file}: inference_config lacks {', '.join(missing)} (needed to z-score)")
        if data.get("prompt_template_type", "detailed_special") != "detailed_special":
            raise ValueError(f"{cfg_file}: prompt_template_type {data['prompt_template_type']!r} is not supported")
        base = Path(base_path or model_cfg["model_name_or_path"])
        if not (base / "config.json").is_file():
            raise FileNotFoundError(
                f"Qwen2-VL base {str(base)!r} (from {'base_path' if base_path else cfg_file}) is not a local model "
                "folder with config.json: pass base_path=<local Qwen2-VL-2B-Instruct folder>"
            )
        self.heads = heads if heads is not None else {head: 1.0}
        if unknown := set(self.heads) - set(HEADS):
            raise ValueError(f"heads {sorted(unknown)} are not among {HEADS}")
        self.name = "videoalign_" + "_".join(self.heads) if heads is None else "videoalign_mix"
        self.video_fps, self.frame_size = video_fps, tuple(frame_size)
        self.fps = fps if fps is not None else data.get("fps", 2.0)
        self.num_frames = num_frames if num_frames is not None or fps is not None else data.get("num_frames")
        self.register_buffer("mean", torch.tensor([norm[f"{h}_mean"] for h in HEADS]), persistent=False)
        self.register_buffer("std", torch.tensor([norm[f"{h}_std"] for h in HEADS]), persistent=False)

        # Tokenizer as VideoAlign's create_model_and_processor: right padding, the reward tokens appended.
        self.tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True, trust_remote_code=False)
        self.tokenizer.padding_side = "right"
        self.tokenizer.add_tokens(list(REWARD_TOKENS), special_tokens=True)
        if self.tokenizer.chat_template is None and (base / "chat_template.json").is_file():  # processor-level one
            self.tokenizer.chat_template = json.loads((base / "chat_template.json").read_text())["chat_template"]
        self.token_ids = self.tokenizer.convert_tokens_to_ids(list(REWARD_TOKENS))
        pre = base / "video_preprocessor_config.json"
        pre = json.loads((pre if pre.is_file() else base / "preprocessor_config.json").read_text())
        self.patch, self.merge = pre.get("patch_size", 14), pre.get("merge_size", 2)
        self.temporal_patch, self.rescale = pre.get("temporal_patch_size", 2), pre.get("rescale_factor", 1 / 255)
        self.register_buffer("pixel_mean", torch.tensor(pre["image_mean"]).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pre["image_std"]).view(3, 1, 1), persistent=False)
        if any(s % (self.patch * self.merge) for s in self.frame_size):
            raise ValueError(f"frame_size {self.frame_size} must be multiples of {self.patch * self.merge}")

        torch_dtype = resolve_dtype(dtype)
        local = dict(local_files_only=True, trust_remote_code=False)
        vlm = Qwen2VLForConditionalGeneration.from_pretrained(
            base, dtype=torch_dtype, attn_implementation=attn_implementation, **local
        )
        tower = vlm.config.vision_config
        if (tower.patch_size, tower.spatial_merge_size) != (self.patch, self.merge):
            raise ValueError(f"{base}: preprocessor patch/merge sizes disagree with the vision tower's")
        self.video_token_id = vlm.config.video_token_id
        vlm.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)  # rows come from the checkpoint
        self.vlm = get_peft_model(vlm, self._lora_config(vlm, lora_cfg))
        hidden = vlm.config.text_config.hidden_size
        self.rm_head = torch.nn.Linear(hidden, model_cfg.get("output_dim", 1), bias=False, dtype=torch_dtype)
        if self.rm_head.out_features not in (1, 3):
            raise ValueError(f"{cfg_file}: output_dim {self.rm_head.out_features} is not 1 or 3")
        self._load_weights(ckpt, files)
        self.requires_grad_(False).eval().to(pick_device(device))

    @staticmethod
    def _lora_config(vlm: torch.nn.Module, cfg: dict) -> LoraConfig:
        """VideoAlign's find_target_linear_names: every Linear/Embedding whose name has no excluded part."""
        exclude = cfg.get("lora_namespan_exclude") or []
        exclude = ast.literal_eval(exclude) if isinstance(exclude, str) else list(exclude)
        exclude += [] if cfg.get("vision_lora") else ["visual"]
        targets = [
            name
            for name, m in vlm.named_modules()
            if isinstance(m, torch.nn.Linear | torch.nn.Embedding) and not any(x in name for x in exclude)
        ]
        if cfg.get("num_lora_modules", -1) > 0:
            targets = targets[-cfg["num_lora_modules"] :]
        return LoraConfig(
            r=cfg["lora_r"],
            lora_alpha=cfg["lora_alpha"],
            lora_dropout=cfg.get("lora_dropout", 0.0),
            use_rslora=cfg.get("use_rslora", False),
            target_modules=targets,
            modules_to_save=cfg.get("lora_modules_to_save"),
            bias="none",
        )

    def _load_weights(self, ckpt: Path, files: list[Path]) -> None:
        if files[0].name == "model.pth":
            state = torch.load(files[0], map_location="cpu", weights_only=True, mmap=True)
        else:
            lora = safetensors.torch.load_file(files[0])  # peft saved it without the adapter name: re-insert
            state = {re.sub(r"\.(lora_[AB])\.weight$", r".\1.default.weight", k): v for k, v in lora.items()}
            state.update(torch.load(files[1], map_location="cpu", weights_only=True))
        rm_head = state.pop("base_model.model.rm_head.weight", None)
        known = set(self.vlm.state_dict())
        state = {_current_key(k, known): v for k, v in state.items()}
        if rm_head is None or not any("embed_tokens" in k for k in state):
            raise ValueError(f"VideoReward checkpoint {ckpt} lacks the rm_head or the (reward-token) embeddings")
        result = self.vlm.load_state_dict(state, strict=False)
        # Base weights may come from the base folder alone; LoRA never may (it would silently be a no-op).
        missing = [k for k in result.missing_keys if "lora_" in k or files[0].name == "model.pth"]
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to embed_tokens
        if missing or result.unexpected_keys:
            raise ValueError(
                f"VideoReward checkpoint {ckpt}: missing {missing[:4]}, unexpected {result.unexpected_keys[:4]}"
            )
        self.rm_head.weight.data.copy_(rm_head)

    def _inputs(self, frames: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """frames [B, N, 3, h, w] uint8 in [0, 255] -> Qwen2-VL inputs, laid out as Qwen2VLVideoProcessor
        and Qwen2VLProcessor do: pixel_values_videos [B * gt * gh * gw, 3 * tp * p * p], one video pad token
        per merged patch, right padding."""
        b, n, c, h, w = frames.shape
        p, m, tp = self.patch, self.merge, self.temporal_patch
        x = (frames.float() * self.rescale - self.pixel_mean) / self.pixel_std
        if n % tp:  # the processor repeats the last frame to fill a temporal patch
            x = torch.cat([x, x[:, -1:].expand(-1, tp - n % tp, -1, -1, -1)], dim=1)
        gt, gh, gw = x.shape[1] // tp, h // p, w // p
        x = x.view(b, gt, tp, c, gh // m, m, p, gw // m, m, p).permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
        pixels = x.reshape(b * gt * gh * gw, c * tp * p * p)  # patches of one merge group are adjacent
        texts = []
        for prompt in prompts:
            content = [{"type": "video"}, {"type": "text", "text": PROMPT.format(text_prompt=prompt)}]
            chat = [{"role": "user", "content": content}]
            text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            if text.count(VIDEO_PAD) != 1:
                raise ValueError(f"prompt {prompt!r}: the chat text must hold exactly one {VIDEO_PAD}")
            texts.append(text.replace(VIDEO_PAD, VIDEO_PAD * (gt * gh * gw // m**2)))
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        ids = enc["input_ids"]
        return {
            "input_ids": ids,
            "attention_mask": enc["attention_mask"],
            "pixel_values_videos": pixels,
            "video_grid_thw": torch.tensor([[gt, gh, gw]] * b),
            "mm_token_type_ids": (ids == self.video_token_id).long() * 2,  # 2 = video (0 text, 1 image)
        }

    def _frames(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] -> sampled frames [B, N, 3, h, w] uint8 in [0, 255]."""
        idx = sample_frame_indices(video.shape[2], self.video_fps, self.fps, self.num_frames)
        x = video[:, :, idx].transpose(1, 2).float()  # [B, N, 3, H, W]
        b, n = x.shape[:2]
        x = F.interpolate(x.flatten(0, 1), size=self.frame_size, mode="bicubic", antialias=True, align_corners=False)
        # uint8 as a decoded mp4 is: VideoAlign's frames were, and the model never saw anything in between.
        x = ((x + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)
        return x.view(b, n, 3, *self.frame_size)

    @torch.no_grad()
    def raw_scores(self, video: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] -> un-normalised (VQ, MQ, TA) [B, 3] float32, one forward for
        the batch; the caller must pass finite videos."""
        prompts = prompts if prompts is not None else [""] * video.shape[0]
        if len(prompts) != video.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {video.shape[0]} videos")
        device = self.rm_head.weight.device
        inputs = {k: v.to(device) for k, v in self._inputs(self._frames(video).to(device), prompts).items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.rm_head.weight.dtype)
        ids = inputs["input_ids"]
        found = torch.stack([(ids == t).sum(1) for t in self.token_ids], dim=1)  # [B, 3]
        if (found != 1).any():
            raise ValueError(f"each reward token must occur once per sample, counts {found.tolist()}")
        hidden = self.vlm.get_base_model().model(**inputs, use_cache=False).last_hidden_state  # [B, L, D]
        pos = torch.stack([(ids == t).int().argmax(1) for t in self.token_ids], dim=1)  # [B, 3]
        logits = self.rm_head(hidden[torch.arange(len(ids), device=device)[:, None], pos])  # [B, 3, out]
        # output_dim 3: head i of token i, as VideoAlign's diagonal; output_dim 1 (the release): one head.
        scores = logits.diagonal(dim1=1, dim2=2) if logits.shape[-1] == 3 else logits[..., 0]
        return scores.float()

    @torch.no_grad()
    def forward(self, video: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1], prompts one per sample -> reward [B] float32: the weighted sum
        of z-scored heads; NaN for a non-finite video, or all NaN when T < 2 (too short to judge)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video shape {tuple(video.shape)} must be [B, 3, T, H, W]")
        if prompts is not None and len(prompts) != video.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {video.shape[0]} videos")
        out = torch.full((video.shape[0],), float("nan"), device=video.device)
        finite = torch.isfinite(video).flatten(1).all(dim=1)  # [B]
        if video.shape[2] < 2 or not finite.any():
            return out
        keep = finite.nonzero()[:, 0].tolist()  # non-finite samples stay out of the forward
        z = (self.raw_scores(video[keep], [prompts[i] for i in keep] if prompts else None) - self.mean) / self.std
        weights = torch.tensor([self.heads.get(h, 0.0) for h in HEADS], device=z.device)
        out[keep] = (z @ weights).to(out.device)
        return out


# VideoAlign prompt_template.py, DETAILED_PROMPT_WITH_SPECIAL_TOKEN, verbatim (trailing spaces included):
# the judge was trained on exactly this text.
PROMPT = "\n".join((
    "",
    "You are tasked with evaluating a generated video based on three distinct criteria: Visual Quality, Motion "
    "Quality, and Text Alignment. Please provide a rating from 0 to 10 for each of the three categories, with 0 "
    "being the worst and 10 being the best. Each evaluation should be independent of the others.",
    "",
    "**Visual Quality:**  ",
    "Evaluate the overall visual quality of the video, with a focus on static factors. The following "
    "sub-dimensions should be considered:",
    "- **Reasonableness:** The video should not contain any significant biological or logical errors, such as "
    "abnormal body structures or nonsensical environmental setups.",
    "- **Clarity:** Evaluate the sharpness and visibility of the video. The image should be clear and easy to "
    "interpret, with no blurring or indistinct areas.",
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual "
    "elements (e.g., hair, clothing, shadows).",
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the video, including the color scheme, "
    "composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense "
    "of harmony and balance.",
    "- **Safety:** The video should not contain harmful or inappropriate content, such as political, violent, or "
    "adult material. If such content is present, the image quality and satisfaction score should be the lowest "
    "possible. ",
    "",
    "Please provide the ratings of Visual Quality: <|VQ_reward|>",
    "END",
    "",
    "**Motion Quality:**  ",
    "Assess the dynamic aspects of the video, with a focus on dynamic factors. Consider the following "
    "sub-dimensions:",
    "- **Stability:** Evaluate the continuity and stability between frames. There should be no sudden, unnatural "
    "jumps, and the video should maintain stable attributes (e.g., no fluctuating colors, textures, or missing "
    "body parts).",
    "- **Naturalness:** The movement should align with physical laws and be realistic. For example, clothing "
    "should flow naturally with motion, and facial expressions should change appropriately (e.g., blinking, "
    "mouth movements).",
    "- **Aesthetic Quality:** The movement should be smooth and fluid. The transitions between different motions "
    "or camera angles should be seamless, and the overall dynamic feel should be visually pleasing.",
    "- **Fusion:** Ensure that elements in motion (e.g., edges of the subject, hair, clothing) blend naturally "
    "with the background, without obvious artifacts or the feeling of cut-and-paste effects.",
    "- **Clarity of Motion:** The video should be clear and smooth in motion. Pay attention to any areas where "
    "the video might have blurry or unsteady sections that hinder visual continuity.",
    "- **Amplitude:** If the video is largely static or has little movement, assign a low score for motion "
    "quality.",
    "",
    "Please provide the ratings of Motion Quality: <|MQ_reward|>",
    "END",
    "",
    "**Text Alignment:**  ",
    "Assess how well the video matches the textual prompt across the following sub-dimensions:",
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the video (e.g., person, animal, object) "
    "align with the textual description. The subject should match the description in terms of number, "
    "appearance, and behavior.",
    "- **Motion Relevance:** Evaluate if the dynamic actions (e.g., gestures, posture, facial expressions like "
    "talking or blinking) align with the described prompt. The motion should match the prompt in terms of type, "
    "scale, and direction.",
    "- **Environment Relevance:** Assess whether the background and scene fit the prompt. This includes checking "
    "if real-world locations or scenes are accurately represented, though some stylistic adaptation is "
    "acceptable.  ",
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well "
    "the video adheres to this style.",
    "- **Camera Movement Relevance:** Check if the camera movements (e.g., following the subject, focus shifts) "
    "are consistent with the expected behavior from the prompt.",
    "",
    "Textual prompt - {text_prompt}",
    "Please provide the ratings of Text Alignment: <|TA_reward|>",
    "END",
    "",
))  # fmt: skip
