"""last.ckpt, every N iterations and at the end, written atomically.

Lightning's ModelCheckpoint counts optimiser steps (two optimisers step at different rates in
Re-DMD) and writes the file in place, so a kill during the write can leave a `last.ckpt` that
does not load. Here the checkpoint goes to a temporary file in the same folder and is renamed
over `last.ckpt` (os.replace is atomic), and the cadence counts iterations: the module's
`iteration` attribute when it has one, else the trainer's global step. On SIGTERM the iteration
that just finished is saved before Lightning stops (in `on_train_batch_end`, or in `on_exception` for a signal
that lands after that hook), so a relaunch loses nothing. A kill during the
write leaves the previous `last.ckpt` intact and a temporary file, which the next run deletes.

Put it after the other callbacks (rf.train does): it saves in `on_train_batch_end`, and what another
callback does in that hook after it (the generator EMA's update) would be missing from the checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from rf.utils.files import replace_file

TMP_PREFIX = ".last.ckpt.tmp-"


def iteration_of(trainer: L.Trainer, module: L.LightningModule) -> int:
    return int(getattr(module, "iteration", trainer.global_step))


class LastCheckpoint(L.Callback):
    def __init__(self, dirpath: str | Path, every_n_iterations: int = 200):
        if every_n_iterations < 1:
            raise ValueError(f"checkpoint_every={every_n_iterations}: must be >= 1")
        self.dirpath, self.every = Path(dirpath), every_n_iterations
        self._saved_at = -1

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:  # half-written checkpoints of a killed run
            for stale in self.dirpath.glob(f"{TMP_PREFIX}*"):
                stale.unlink(missing_ok=True)

    def save(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        it = iteration_of(trainer, module)
        if it == self._saved_at or getattr(module, "nonfinite_streak", 0):  # keep the state from before a NaN streak
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f"{TMP_PREFIX}{os.getpid()}"
        trainer.save_checkpoint(tmp, weights_only=False)  # every rank takes part; rank 0 writes the file
        if trainer.is_global_zero:
            replace_file(tmp, self.last_path)  # fsynced first: a power cut cannot leave the name on no data
        self._saved_at = it

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        it = iteration_of(trainer, module)
        # never mid-iteration: gradients accumulated so far are not part of a checkpoint
        if not getattr(module, "at_iteration_boundary", True):
            return
        # SIGTERM (a cluster's preemption, Ctrl-C of a scheduler): Lightning stops after this batch; save it first
        if (it > 0 and it % self.every == 0) or trainer.received_sigterm:
            self.save(trainer, module)

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        # Lightning checks its SIGTERM flag at the end of the batch, after on_train_batch_end and the loggers: a
        # signal that lands in between was not seen above, and the iteration it ended is saved here (once)
        if isinstance(exception, SIGTERMException) and getattr(module, "at_iteration_boundary", True):
            self.save(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.save(trainer, module)
