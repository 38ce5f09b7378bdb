"""ODE pair store: round trip, resume, crash safety, corruption, and the DataModule's batches."""

from __future__ import annotations

import json
import os

import pytest
import torch

import rf.utils.files as files
from rf.lit.ode_pairs import MANIFEST, OdePairDataModule, OdePairDataset, OdePairWriter, sha256

SHAPE = (5, 2, 3, 4, 4)  # [K+1, C, F, H, W] with K = 4
META = {"teacher": "toy.ckpt", "timesteps": [1000.0, 750.0, 500.0, 250.0], "latent_shape": [2, 3, 4, 4], "seed": 0}


def fill(folder, counts=(4, 4, 2)):
    """Write shards of the given sizes; sample i has states full of i, prompt "p{i}", seed 100 + i."""
    writer = OdePairWriter(folder, shard_size=4, meta=META)
    for n in counts:
        first, _ = writer.next_shard()
        index = range(first, first + n)
        states = torch.stack([torch.full(SHAPE, float(i)) for i in index])  # [n, K+1, C, F, H, W]
        writer.write_shard(states, [f"p{i}" for i in index], [100 + i for i in index])
    return writer


def test_round_trip(tmp_path):
    writer = fill(tmp_path / "pairs")
    assert writer.completed == 10
    ds = OdePairDataset(tmp_path / "pairs")
    assert len(ds) == 10 and ds.meta == META
    for i in [0, 3, 4, 9, 5, 1]:  # across shards and back: the one-shard cache must switch correctly
        item = ds[i]
        assert torch.equal(item["states"], torch.full(SHAPE, float(i)))
        assert item["prompt"] == f"p{i}" and item["seed"] == 100 + i
    assert [s["count"] for s in json.loads((tmp_path / "pairs" / MANIFEST).read_text())["shards"]] == [4, 4, 2]


def test_dtype_kept(tmp_path):
    writer = OdePairWriter(tmp_path / "pairs", shard_size=4, meta=META)
    states = torch.randn(2, *SHAPE).to(torch.bfloat16)
    writer.write_shard(states, ["a", "b"], [0, 1])
    item = OdePairDataset(tmp_path / "pairs")[1]
    assert item["states"].dtype == torch.bfloat16 and torch.equal(item["states"], states[1])


def test_resume_and_meta_mismatch(tmp_path):
    fill(tmp_path / "pairs")
    writer = OdePairWriter(tmp_path / "pairs", shard_size=4, meta=dict(META))
    assert writer.completed == 10 and writer.next_shard() == (10, 4)
    with pytest.raises(ValueError, match="'seed'.*new folder"):
        OdePairWriter(tmp_path / "pairs", shard_size=4, meta={**META, "seed": 1})
    with pytest.raises(ValueError, match="shard_size=8"):
        OdePairWriter(tmp_path / "pairs", shard_size=8, meta=META)


def test_missing_parent(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        OdePairWriter(tmp_path / "nope" / "pairs", shard_size=4, meta=META)


def test_killed_run_strays_deleted(tmp_path):
    folder = tmp_path / "pairs"
    fill(folder, counts=(4, 4))
    # a run killed mid-write: a temp file, and a complete-looking shard the manifest never got to list
    (folder / "shard_00002.safetensors.tmp").write_bytes(b"\x00garbage" * 100)
    (folder / "shard_00002.safetensors").write_bytes(b"half a shard")
    (folder / "notes.txt").write_text("not ours")
    writer = OdePairWriter(folder, shard_size=4, meta=META)
    assert writer.completed == 8 and writer.next_shard() == (8, 4)
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST, "notes.txt", "shard_00000.safetensors", "shard_00001.safetensors"
    ]  # fmt: skip
    assert len(OdePairDataset(folder)) == 8


def test_manifest_only_lists_complete_shards(tmp_path, monkeypatch):
    """Every manifest that lands on disk names only shards already in place with their checksum."""
    folder = tmp_path / "pairs"
    replaced = []
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == MANIFEST:
            for shard in json.loads(open(src).read())["shards"]:
                assert sha256(folder / shard["file"]) == shard["sha256"]
        replaced.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    fill(folder, counts=(4, 2))
    assert replaced == [MANIFEST, "shard_00000.safetensors", MANIFEST, "shard_00001.safetensors", MANIFEST]

    # killed between the shard's rename and the manifest update: the next writer drops the orphan
    writer = OdePairWriter(folder, shard_size=4, meta=META)

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(OdePairWriter, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.write_shard(torch.zeros(1, *SHAPE), ["x"], [0])
    assert (folder / "shard_00002.safetensors").exists()
    monkeypatch.undo()
    assert OdePairWriter(folder, shard_size=4, meta=META).completed == 6
    assert not (folder / "shard_00002.safetensors").exists()


def test_corrupted_shard(tmp_path):
    folder = tmp_path / "pairs"
    fill(folder)
    path = folder / "shard_00001.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard_00001.safetensors"):
        OdePairDataset(folder)
    with pytest.raises(ValueError, match="shard_00001.safetensors"):
        OdePairWriter(folder, shard_size=4, meta=META)
    assert len(OdePairDataset(folder, verify=False)) == 10


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="rf.make_ode_pairs"):
        OdePairDataset(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="rf.make_ode_pairs"):
        OdePairDataset(tmp_path / "empty")


def test_datamodule(tmp_path):
    fill(tmp_path / "pairs")
    dm = OdePairDataModule(str(tmp_path / "pairs"), batch_size=3, seed=7)
    batch = next(iter(dm.train_dataloader()))
    assert batch["states"].shape == (3, *SHAPE)
    assert len(batch["prompt"]) == 3 and all(isinstance(p, str) for p in batch["prompt"])
    assert batch["seed"].shape == (3,)
    # each sample's states are full of its index: the batch stays aligned with its prompts
    assert [f"p{int(s[0, 0, 0, 0, 0])}" for s in batch["states"]] == batch["prompt"]

    def order(seed):
        dl = OdePairDataModule(str(tmp_path / "pairs"), batch_size=3, seed=seed).train_dataloader()
        return [p for b in dl for p in b["prompt"]]

    assert len(order(7)) == 9  # drop_last: 10 pairs make 3 full batches
    assert order(7) == order(7) and order(7) != order(8)
    with pytest.raises(ValueError, match="10 ODE pairs.*batch_size=11"):
        OdePairDataModule(str(tmp_path / "pairs"), batch_size=11).train_dataloader()
