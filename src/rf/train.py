"""python -m rf.train experiment=NAME: fit the experiment's LightningModule in runs/NAME.

Relaunching the same command continues from runs/NAME/checkpoints/last.ckpt (`ckpt_path=last`,
the default); `ckpt_path=null` starts over. Hydra multirun (`-m key=a,b`) gives every point its
own folder, runs/NAME/<overrides>, so each point resumes on its own too.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from rf.callbacks.checkpoint import LastCheckpoint
from rf.utils.cli import entry
from rf.utils.instantiate import instantiate


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` is this run's own last.ckpt, if any (Lightning's 'last' only searches its callback's dir)."""
    if ckpt_path in (None, "null", "none"):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file (use ckpt_path=last or null)")
    return ckpt_path


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list) -> L.Trainer:
    loggers = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(run_dir, name="logs"))
    if cfg.logger.tensorboard:
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    # checkpoint_every=null: no checkpoints at all (throughput measurements; a full-size one is 40 GB)
    checkpoints = []
    if cfg.checkpoint_every is not None:
        checkpoints.append(LastCheckpoint(run_dir / "checkpoints", every_n_iterations=cfg.checkpoint_every))
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    if isinstance(trainer.get("strategy"), dict):  # e.g. ModelParallelStrategy for FSDP2 (trainer=fsdp2)
        trainer["strategy"] = instantiate(trainer["strategy"])
    return L.Trainer(
        **trainer,
        default_root_dir=run_dir,
        logger=loggers or False,
        callbacks=[*checkpoints, *callbacks],
        enable_checkpointing=False,
    )


@entry("train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module, model=cfg.model, optim=cfg.optim, _recursive_=False)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]  # null: removed
    trainer = build_trainer(cfg, run_dir, callbacks)
    ckpt = resolve_ckpt(cfg.ckpt_path, run_dir)
    if ckpt:
        print(f"resuming from {ckpt}")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    print(f"run folder: {run_dir}  (last checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'})")


if __name__ == "__main__":
    main()
