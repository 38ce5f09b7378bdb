"""Seconds per iteration and peak GPU memory, logged and written to RUN/throughput.json at the end.

Re-DMD iterations are of two kinds: every `generator_every`-th also rolls out with gradient, scores,
and steps the generator; the others only train the critic. They are timed and summarised apart.
Times are wall clock between iteration ends, with the GPU synchronised, so they include data, reward,
logging and optimiser steps: what a run costs.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import lightning as L
import torch


class Throughput(L.Callback):
    def __init__(self, skip: int = 1, filename: str = "throughput.json"):
        self.skip, self.filename = skip, filename  # skip: first iterations left out of the summary (warm-up)
        self.records: list[dict] = []
        self._start: float | None = None

    def _now(self, module) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self._start is None:
            self._start = self._now(module)
            if module.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(module.device)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if not getattr(module, "at_iteration_boundary", True) or self._start is None:
            return
        seconds = self._now(module) - self._start
        record = {"iteration": int(getattr(module, "iteration", trainer.global_step)) - 1, "seconds": seconds}
        record["generator_step"] = bool(getattr(module, "generator_stepped", False))
        if module.device.type == "cuda":
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(module.device) / 2**30
        self.records.append(record)
        module.log("perf/seconds_per_iteration", seconds)
        if "peak_memory_gib" in record:
            module.log("perf/peak_memory_gib", record["peak_memory_gib"])
        self._start = None

    def summary(self) -> dict:
        timed = self.records[self.skip :]
        out: dict = {"iterations": len(self.records), "skipped_warmup": min(self.skip, len(self.records))}
        for kind, flag in (("generator_iteration", True), ("critic_iteration", False)):
            seconds = [r["seconds"] for r in timed if r["generator_step"] == flag]
            if seconds:
                out[f"{kind}_seconds_median"] = statistics.median(seconds)
                out[f"{kind}_count"] = len(seconds)
        memory = [r["peak_memory_gib"] for r in self.records if "peak_memory_gib" in r]
        if memory:
            out["peak_memory_gib"] = max(memory)
        return out

    def on_train_end(self, trainer, module) -> None:
        if not trainer.is_global_zero or not self.records:
            return
        device = torch.cuda.get_device_name(module.device) if module.device.type == "cuda" else "cpu"
        payload = {
            "device": device,
            "world_size": trainer.world_size,
            "torch": torch.__version__,
            "summary": self.summary(),
            "records": self.records,
        }
        path = Path(trainer.default_root_dir) / self.filename
        path.write_text(json.dumps(payload, indent=1))
        print(f"throughput: {path}  {json.dumps(payload['summary'])}")
