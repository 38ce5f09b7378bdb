"""The cache policy through a run: the one owner of `sink` (policy, sizes, alpha) in training.

Every policy, not only EMA-Sink (the name is the paper's method). The settings are built once, here, as a
CacheConfig; rf.train hands that object to the module (DistillModule's `sink`), whose StreamSampler streams
every rollout with it, so training rollouts stream with the same cache as inference (PAPER.md §2: no
train/test gap; `sink=full` reproduces the released recipe). Nothing else sets them: in `setup` a module
built with other settings is refused, not silently changed. After each training batch it logs, from the
latest rollout: evicted frames and the sink's drift from the first chunk (||S - S0|| / ||S0||, first block).
The settings are kept in the checkpoint, and a resumed run with different settings is refused.
"""

from __future__ import annotations

from dataclasses import asdict

import lightning as L

from rf.models.cache import CacheConfig


class EMASinkCallback(L.Callback):
    def __init__(self, policy: str = "ema_sink", sink_frames: int = 3, attention_frames: int = 9,
                 chunk_frames: int = 3, alpha: float = 0.99):  # fmt: skip
        self.config = CacheConfig(policy, sink_frames, attention_frames, chunk_frames, alpha)
        self.evicted_total = 0

    @property
    def state_key(self) -> str:
        return "EMASink"

    def setup(self, trainer, module, stage: str) -> None:
        """The module streams with these settings: it was built with them (rf.train), or it is refused."""
        sampler = getattr(module, "sampler", None)
        if sampler is None:
            raise ValueError(
                f"callbacks.ema_sink: {type(module).__name__} streams no rollouts, so it has no cache to set: "
                "remove callbacks.ema_sink (callbacks.ema_sink=null), or train a distillation module"
            )
        if sampler.cache_config != self.config:
            raise ValueError(
                f"the module streams with sink {asdict(sampler.cache_config)} but callbacks.ema_sink owns "
                f"{asdict(self.config)}: build the module with the callback's, DistillModule(sink=callback.config)"
            )

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        cache = module.sampler.last_cache
        if cache is None:
            return
        self.evicted_total += cache.evicted_frames
        module.log_dict({
            "sink/evicted_frames": float(cache.evicted_frames),
            "sink/drift_from_first_chunk": cache.sink_drift(),
            "sink/cache_mb": cache.nbytes() / 2**20,
        })  # fmt: skip

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "evicted_total": self.evicted_total}

    def load_state_dict(self, state: dict) -> None:
        saved = CacheConfig(**state["config"])
        if saved != self.config:
            raise ValueError(
                f"the checkpoint was trained with sink {asdict(saved)}, this run asks for {asdict(self.config)}: "
                "resume with the same sink settings, or start a new run (another name, or ckpt_path=null)"
            )
        self.evicted_total = state["evicted_total"]
