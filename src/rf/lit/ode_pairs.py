"""Teacher ODE pairs on disk: a sharded, checksummed, resumable store and the DataModule serving it.

One sample is a teacher trajectory `states` [K+1, C, F, H, W] (the K noisy states at the student's
timesteps, index K the clean endpoint) with its prompt and noise seed. Samples live in safetensors
shards of `shard_size`; manifest.json lists the complete shards with their sha256:

    {"version": 1, "meta": {...}, "shard_size": S, "total": N,
     "shards": [{"file": "shard_00000.safetensors", "count": S, "sha256": "...", "first": 0}, ...]}

A shard is written to a temp file, fsynced and renamed into place before the manifest mentions it,
and the manifest is replaced the same way, so a run killed at any point leaves a manifest that lists
only complete shards; whatever else it left behind is deleted when the next writer opens the folder.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from pathlib import Path

import lightning as L
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from rf.lit.common import seeded_loader
from rf.utils.files import atomic_write, read_versioned_json, replace_file

MANIFEST = "manifest.json"
VERSION = 1
TMP = ".tmp"  # suffix of files being written; any left over belong to a killed run
SHARD = re.compile(r"shard_\d{5}\.safetensors")
STRAY = re.compile(rf"(shard_\d{{5}}\.safetensors|{re.escape(MANIFEST)}){re.escape(TMP)}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    manifest = read_versioned_json(path, VERSION, f"delete {folder} and regenerate the pairs")
    if manifest is None:
        return None
    # valid JSON of another layout (hand-edited, or another tool's manifest.json) is refused here, not later
    shards = manifest.get("shards")
    layout = {"meta", "shard_size", "total", "shards"} <= manifest.keys() and isinstance(shards, list)
    if not layout or not all(isinstance(s, dict) and {"file", "count", "sha256", "first"} <= s.keys() for s in shards):
        raise ValueError(f"{path} is not an ODE-pair manifest of this layout: delete {folder} and regenerate the pairs")
    first = 0
    for shard in manifest["shards"]:
        if shard["first"] != first:
            raise ValueError(f"{path}: {shard['file']} starts at sample {shard['first']}, expected {first}")
        first += shard["count"]
    if manifest["total"] != first:
        raise ValueError(f"{path}: total={manifest['total']} but its shards hold {first} samples")
    return manifest


def _check_shards(folder: Path, manifest: dict, verify: bool) -> None:
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in {MANIFEST} but missing: restore it or regenerate {folder}")
        if verify and sha256(path) != shard["sha256"]:
            raise ValueError(
                f"{path.name} in {folder} fails its sha256 check (corrupted): delete {folder} and regenerate"
            )


class OdePairWriter:
    """Sharded safetensors store with a manifest and per-shard sha256 checksums; resumable."""

    def __init__(self, folder: str | Path, shard_size: int, meta: dict, verify: bool = True):
        self.folder = Path(folder)
        if shard_size < 1:
            raise ValueError(f"shard_size={shard_size}: must be >= 1")
        if not self.folder.parent.is_dir():
            raise FileNotFoundError(f"{self.folder.parent} does not exist: create it or pick another output folder")
        try:  # the round trip normalises tuples to lists, as the stored meta will read back
            meta = json.loads(json.dumps(meta))
        except TypeError as e:
            raise ValueError(f"meta must be JSON-serialisable (plain dicts, lists, numbers, str): {e}") from e
        self.folder.mkdir(exist_ok=True)

        manifest = _read_manifest(self.folder)
        if manifest is None:
            manifest = {"version": VERSION, "meta": meta, "shard_size": shard_size, "shards": [], "total": 0}
        else:
            self._check_compatible(manifest, meta, shard_size)
        self.manifest = manifest
        self._clean_strays()
        _check_shards(self.folder, manifest, verify)
        self._write_manifest()  # pins meta before the first shard, so a mismatched relaunch fails at once

    def _check_compatible(self, manifest: dict, meta: dict, shard_size: int) -> None:
        old = manifest["meta"]
        for key in sorted(old.keys() | meta.keys()):
            if old.get(key) != meta.get(key):
                raise ValueError(
                    f"{self.folder} holds ODE pairs made with meta[{key!r}]={old.get(key)!r}, this run has "
                    f"{meta.get(key)!r}: use a new folder (or the original settings)"
                )
        if manifest["shard_size"] != shard_size:
            raise ValueError(
                f"shard_size={shard_size}, but {self.folder} was written with shard_size="
                f"{manifest['shard_size']}: pass that or use a new folder"
            )

    def _clean_strays(self) -> None:
        # our temp files and shards the manifest does not list: a killed run's partial work, never served;
        # other files are left alone in case the folder was shared by mistake
        listed = {s["file"] for s in self.manifest["shards"]}
        for path in self.folder.iterdir():
            if STRAY.fullmatch(path.name) or (SHARD.fullmatch(path.name) and path.name not in listed):
                path.unlink()

    def _write_manifest(self) -> None:
        path = self.folder / MANIFEST
        text = json.dumps(self.manifest, indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text), tmp=path.with_name(path.name + TMP), fsync_dir=True)

    @property
    def completed(self) -> int:
        return self.manifest["total"]

    def next_shard(self) -> tuple[int, int]:
        return self.completed, self.manifest["shard_size"]

    def write_shard(self, states: torch.Tensor, prompts: list[str], seeds: list[int]) -> Path:
        """Store one shard; states [n, K+1, C, F, H, W] keep their dtype. Returns the shard's path."""
        n = states.shape[0] if states.ndim == 6 else -1
        if n < 1 or n > self.manifest["shard_size"]:
            raise ValueError(
                f"states of shape {tuple(states.shape)}: expected [n, K+1, C, F, H, W] with "
                f"1 <= n <= shard_size={self.manifest['shard_size']}"
            )
        if len(prompts) != n or len(seeds) != n:
            raise ValueError(
                f"{n} states but {len(prompts)} prompts and {len(seeds)} seeds: pass one of each per state"
            )

        index = len(self.manifest["shards"])
        path = self.folder / f"shard_{index:05d}.safetensors"
        tmp = path.with_name(path.name + TMP)
        metadata = {"prompts": json.dumps(list(prompts)), "seeds": json.dumps([int(s) for s in seeds])}
        save_file({"states": states.detach().cpu().contiguous()}, str(tmp), metadata=metadata)
        digest = sha256(tmp)
        replace_file(tmp, path, fsync_dir=True)  # the shard is complete on disk before the manifest names it

        self.manifest["shards"].append({"file": path.name, "count": n, "sha256": digest, "first": self.completed})
        self.manifest["total"] += n
        self._write_manifest()
        return path


class OdePairDataset(Dataset):
    """Item i of the store: {"states": [K+1, C, F, H, W], "prompt": str, "seed": int}, read lazily."""

    def __init__(self, folder: str | Path, verify: bool = True):
        self.folder = Path(folder)
        manifest = _read_manifest(self.folder) if self.folder.is_dir() else None
        if manifest is None:
            raise FileNotFoundError(
                f"no ODE pairs in {self.folder}: run `python -m rf.make_ode_pairs out={self.folder}` first"
            )
        _check_shards(self.folder, manifest, verify)
        self.meta = manifest["meta"]
        self.shards = manifest["shards"]
        self.firsts = [s["first"] for s in self.shards]
        self.total = manifest["total"]
        self._open = None  # (shard index, safe_open handle, prompts, seeds): one shard mapped at a time

    def __len__(self) -> int:
        return self.total

    def _shard(self, s: int):
        if self._open is None or self._open[0] != s:
            path = self.folder / self.shards[s]["file"]
            try:  # verify=false skipped the checksums: a damaged shard shows here
                f = safe_open(str(path), framework="pt")
                meta = f.metadata()
                self._open = (s, f, json.loads(meta["prompts"]), json.loads(meta["seeds"]))
            except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path} is damaged ({err}): delete {self.folder} and regenerate the pairs") from err
        return self._open[1:]

    def __getitem__(self, i: int) -> dict:
        if not -self.total <= i < self.total:
            raise IndexError(f"index {i} out of range for {self.total} ODE pairs")
        i %= self.total
        s = bisect.bisect_right(self.firsts, i) - 1
        j = i - self.firsts[s]
        f, prompts, seeds = self._shard(s)
        states = f.get_slice("states")[j : j + 1][0]  # [K+1, C, F, H, W]: reads this sample only
        return {"states": states, "prompt": prompts[j], "seed": seeds[j]}

    def __getstate__(self) -> dict:
        # file handles do not pickle (spawned workers): each process opens its own
        return {**self.__dict__, "_open": None}


class OdePairDataModule(L.LightningDataModule):
    def __init__(self, folder: str, batch_size: int = 4, num_workers: int = 0, seed: int = 0, verify: bool = True):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be >= 1")
        self.folder, self.batch_size, self.num_workers = folder, batch_size, num_workers
        self.seed, self.verify = seed, verify
        self._dataset = None

    @property
    def dataset(self) -> OdePairDataset:
        # built once: verifying tens of GB of shards per dataloader would cost minutes
        if self._dataset is None:
            self._dataset = OdePairDataset(self.folder, verify=self.verify)
        return self._dataset

    def train_dataloader(self) -> DataLoader:
        if len(self.dataset) < self.batch_size:
            raise ValueError(
                f"{self.folder} holds {len(self.dataset)} ODE pairs, fewer than batch_size={self.batch_size}: "
                "generate more pairs or lower data.batch_size"
            )
        return seeded_loader(self.dataset, self.batch_size, self.seed, self.num_workers)
