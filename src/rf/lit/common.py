"""Small pieces every rf LightningModule and DataModule shares."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def adamw(params, optim: dict, lr: float) -> torch.optim.AdamW:
    """AdamW with the betas and weight decay of an `optim` config (conf/optim/)."""
    return torch.optim.AdamW(params, lr=lr, betas=tuple(optim["betas"]), weight_decay=optim["weight_decay"])


def seeded_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0) -> DataLoader:
    """Shuffled in an order fixed by `seed`, full batches only."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=True,
    )
