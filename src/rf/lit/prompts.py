"""Prompts for Re-DMD: an endless, deterministic stream of prompt batches.

Batch b holds the prompts of samples [b B, (b + 1) B) (with several processes, each takes its own
slice of every global batch): toy-world scenes of those seeds, or lines
of a prompt file (one per line, cycled in a seeded order). The stream starts at the module's
`micro_step`, which a checkpoint restores before Lightning asks for the dataloader, so a resumed
run sees exactly the prompts an uninterrupted one would have.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from rf.toy.world import ToyWorld

# Byte-order marks of the encodings an editor may save a text file in that is not UTF-8 (UTF-8's own is dropped).
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def read_prompt_file(path: str | Path) -> list[str]:
    """One prompt per line of a UTF-8 text file (a UTF-8 byte-order mark is dropped, blank lines skipped).

    A file in another encoding (UTF-16 from a Windows editor, Latin-1) or a binary file is refused with a line
    that says what it is and how to convert it: read as UTF-8 it would give mojibake prompts, silently.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.prompts={path}: no such prompt file (one prompt per line)")
    data = path.read_bytes()
    bom = next((name for mark, name in _BOMS.items() if data.startswith(mark)), None)
    if bom is not None:
        raise ValueError(
            f"data.prompts={path} is not UTF-8 text but {bom} (it starts with a {bom} byte-order mark): convert it, "
            f"e.g. `iconv -f {bom} -t UTF-8 {path.name} > prompts.txt`"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"data.prompts={path} is not UTF-8 text (byte {err.start} is not UTF-8): a binary file, or text in "
            f"another encoding such as Latin-1; convert it, e.g. `iconv -f LATIN1 -t UTF-8 {path.name} > prompts.txt`"
        ) from err
    if "\x00" in text:
        raise ValueError(f"data.prompts={path} is not UTF-8 text (it holds NUL bytes: a binary file?)")
    lines = text.splitlines()
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"data.prompts={path} holds no prompts (one prompt per line)")
    return prompts


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
