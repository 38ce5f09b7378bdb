"""Prompts for Re-DMD: an endless, deterministic stream of prompt batches.

Batch b holds the prompts of samples [b B, (b + 1) B) (with several processes, each takes its own
slice of every global batch): toy-world scenes of those seeds, or lines
of a prompt file (one per line, cycled in a seeded order). The stream starts at the module's
`micro_step`, which a checkpoint restores before Lightning asks for the dataloader, so a resumed
run sees exactly the prompts an uninterrupted one would have.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from rf.toy.world import ToyWorld
from rf.utils.files import read_prompt_file


class PromptStream(IterableDataset):
    """Batch b of process `rank` out of `world` holds samples [(b W + rank) B, (b W + rank + 1) B)."""

    def __init__(self, prompt_of, batch_size: int, start_batch: int, rank: int = 0, world: int = 1):
        self.prompt_of, self.batch_size, self.start = prompt_of, batch_size, start_batch
        self.rank, self.world = rank, world

    def __iter__(self):
        b = self.start
        while True:
            first = (b * self.world + self.rank) * self.batch_size
            index = torch.arange(first, first + self.batch_size)
            yield {"prompt": [self.prompt_of(int(i)) for i in index], "index": index}
            b += 1


class PromptDataModule(L.LightningDataModule):
    def __init__(
        self,
        batch_size: int = 4,
        prompts: str | None = None,
        height: int = 32,
        width: int = 32,
        fps: int = 8,
        world: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be >= 1")
        self.batch_size, self.seed = batch_size, seed
        if prompts is None:
            world = ToyWorld(height=height, width=width, fps=fps, **dict(world or {}))  # rules: conf/model/world
            self.prompt_of = lambda i: world.sample_scene(seed * 10_000_019 + i).prompt()
        else:
            lines = read_prompt_file(prompts)
            order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
            self.prompt_of = lambda i: lines[order[i % len(lines)]]

    def train_dataloader(self) -> DataLoader:
        if self.trainer is None:
            return DataLoader(PromptStream(self.prompt_of, self.batch_size, 0), batch_size=None)
        start = getattr(self.trainer.lightning_module, "micro_step", 0)
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(PromptStream(self.prompt_of, self.batch_size, start, rank, world), batch_size=None)
