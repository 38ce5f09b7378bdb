"""Toy-world clips for flow-matching training: an endless, deterministic stream of (video, prompt)."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset

from rf.lit.common import seeded_loader
from rf.toy.world import ToyWorld


class ToyClips(Dataset):
    """Item i is the clip of seed `offset + i`: the same data in every process and after a resume."""

    def __init__(self, world: ToyWorld, frames: int, size: int, offset: int = 0):
        self.world, self.frames, self.size, self.offset = world, frames, size, offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        clip = self.world.sample(self.offset + i, self.frames)
        return {"video": clip.video, "prompt": clip.prompt}  # video [3, T, H, W] in [-1, 1]


class ToyVideoDataModule(L.LightningDataModule):
    def __init__(
        self,
        height: int = 32,
        width: int = 32,
        fps: int = 8,
        world: dict | None = None,
        frames: int = 9,
        batch_size: int = 8,
        num_workers: int = 0,
        size: int = 1_000_000,
        seed: int = 0,
    ):
        super().__init__()
        if frames < 1 or batch_size < 1:
            raise ValueError(f"data.frames={frames}, data.batch_size={batch_size}: both must be >= 1")
        self.world = ToyWorld(height=height, width=width, fps=fps, **dict(world or {}))  # rules: conf/model/world
        self.frames, self.batch_size, self.num_workers = frames, batch_size, num_workers
        self.size, self.seed = size, seed

    def train_dataloader(self) -> DataLoader:
        clips = ToyClips(self.world, self.frames, self.size, offset=self.seed * self.size)
        return seeded_loader(clips, self.batch_size, self.seed, self.num_workers)
