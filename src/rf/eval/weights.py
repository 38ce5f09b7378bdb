"""Metrics that need local weights: CLIP score (torchmetrics CLIPScore) and VideoAlign (rf.rewards.videoalign).

Nothing is downloaded. A folder that is missing or unreadable skips that metric with a warning naming it (and
the reason is kept for the report); every other metric still runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from rf.utils.instantiate import instantiate, to_dict

VIDEOALIGN_COLUMNS = ("videoalign_VQ", "videoalign_MQ", "videoalign_TA", "videoalign_reward")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _ClipFeatures(torch.nn.Module):
    """A CLIPModel whose get_image_features / get_text_features return the projected embeddings as tensors:
    transformers >= 5 returns a model output there (embeddings in pooler_output), which torchmetrics' CLIPScore
    (1.9) divides by its norm as if it were a tensor."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        out = self.model.get_image_features(*args, **kwargs)
        return out if torch.is_tensor(out) else out.pooler_output

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        out = self.model.get_text_features(*args, **kwargs)
        return out if torch.is_tensor(out) else out.pooler_output


def build_clip(folder: str | None, skipped: dict[str, str]):
    """torchmetrics CLIPScore on a local CLIP folder (CLIPModel + CLIPProcessor files), or None (skipped)."""
    if folder is None:
        return None
    path = Path(folder)
    if not path.is_dir():
        skipped["clip_score"] = f"clip={path}: no such folder"
        warn(f"clip={path}: no such folder; CLIP score skipped, the other metrics still run")
        return None
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    def load():
        model = CLIPModel.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        return _ClipFeatures(model), processor

    try:
        return CLIPScore(model_name_or_path=load)
    except (OSError, ValueError) as err:
        skipped["clip_score"] = f"clip={path}: {str(err).splitlines()[0]}"
        warn(f"clip={path} is not a loadable CLIP folder ({str(err).splitlines()[0]}); CLIP score skipped")
        return None


def build_videoalign(spec, fps: float, device: str, skipped: dict[str, str]):
    """VideoAlignReward from a VideoReward folder (its Qwen2-VL base beside it) or a reward config, or None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        from rf.rewards.videoalign import VideoAlignReward

        folder = Path(spec)
        base = folder.parent / "Qwen2-VL-2B-Instruct"

        def build():
            return VideoAlignReward(folder, base_path=base if base.is_dir() else None, video_fps=fps, device=device)

        where = f"videoalign={folder}"
    else:
        spec = to_dict(spec)

        def build():
            return instantiate(spec)

        where = f"videoalign.path={spec.get('path')}"
    try:
        return build()
    except FileNotFoundError as err:
        reason = f"{where}: {err}"
        for key in VIDEOALIGN_COLUMNS:
            skipped[key] = reason
        warn(f"{reason}; VideoAlign scores skipped, the other metrics still run")
        return None
