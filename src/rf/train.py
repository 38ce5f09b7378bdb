"""python -m rf.train experiment=NAME: fit the experiment's LightningModule in runs/NAME.

Relaunching the same command continues from runs/NAME/checkpoints/last.ckpt (`ckpt_path=last`,
the default); `ckpt_path=null` starts over. Hydra multirun (`-m key=a,b`) gives every point its
own folder, runs/NAME/<overrides>, so each point resumes on its own too.

Several processes (trainer=ddp_cpu, trainer=fsdp2) are started by torchrun or srun, never by rf.train
itself: Lightning's own re-launch breaks Hydra multirun.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from rf.callbacks.checkpoint import LastCheckpoint, iteration_of
from rf.callbacks.ema_sink import EMASinkCallback
from rf.lit.memory import check_fits
from rf.models.loading import check_torch_file, damaged
from rf.toy.text import check_toy_prompts, is_toy_encoder
from rf.utils.cli import entry
from rf.utils.files import read_prompt_file
from rf.utils.instantiate import instantiate
from rf.utils.stop import continue_command
from rf.utils.video import check_frame_size


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` is this run's own last.ckpt, if any (Lightning's 'last' only searches its callback's dir)."""
    if ckpt_path in (None, "null", "none"):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            return None
        try:
            check_resume_checkpoint(last)
        except ValueError as err:
            raise ValueError(f"{err} (or delete it, or ckpt_path=null, to start over)") from err
        return str(last)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file (use ckpt_path=last or null)")
    check_resume_checkpoint(Path(ckpt_path))
    return ckpt_path


def check_resume_checkpoint(path: Path) -> None:
    """A checkpoint to resume from must read back as Lightning's, before the trainer starts: a truncated, empty
    or foreign file would otherwise fail deep inside `trainer.fit` with torch's own error. mmap: the tensors stay
    on disk, only the structure is read (a full-size last.ckpt is 40 GB)."""
    check_torch_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # zip, EOF, unpickling errors of a file that is not a whole torch.save
        raise damaged(path, err) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        raise ValueError(
            f"{path} is a checkpoint of another kind, not a Lightning training checkpoint: resume from a run's "
            "checkpoints/last.ckpt, or start weights from it with module.*_ckpt= (and ckpt_path=null)"
        )


def check_launch(trainer: dict) -> None:
    """A trainer of N > 1 processes must run under torchrun/srun (one process each), not spawn them itself."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    if isinstance(devices, int) and devices * nodes > 1 and not {"WORLD_SIZE", "SLURM_NTASKS"} & os.environ.keys():
        raise ValueError(
            f"trainer.devices={devices}: start the {devices * nodes} processes with "
            f"`torchrun --nproc-per-node {devices} -m rf.train ...` (or srun); rf.train does not spawn them itself"
        )


def check_devices(trainer: dict) -> None:
    """The trainer's accelerator, device count and precision must exist here: Lightning would otherwise stop with
    its own multi-line error after the models are built (or, for bf16 on an old GPU, fail in the first step)."""
    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", "auto")
    if accelerator not in ("gpu", "cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"trainer.accelerator={accelerator}: this machine has no CUDA GPU: use trainer=cpu (or trainer=ddp_cpu)"
        )
    wanted = len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else 1
    indices = devices if isinstance(devices, list) else []
    if (isinstance(wanted, int) and wanted > count) or any(i >= count for i in indices):
        raise ValueError(
            f"trainer.devices={devices}: this machine has {count} CUDA GPU{'s' * (count > 1)}: "
            f"use trainer.devices={count} or fewer (one process each, started by torchrun)"
        )
    if str(trainer.get("precision", "")).startswith("bf16") and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"trainer.precision={trainer['precision']}: {torch.cuda.get_device_name()} cannot compute in bf16 (it "
            "needs compute capability 8.0, Ampere or newer): use trainer.precision=16-mixed or 32-true"
        )


def check_memory(cfg: DictConfig) -> None:
    """A distillation run on GPUs must fit its sharded states and measured activations (rf.lit.memory), checked
    before the teacher, critic and student are built."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    target = str(OmegaConf.select(cfg, "module._target_", default=""))
    if accelerator not in ("gpu", "cuda") or not target.endswith("DistillModule") or not torch.cuda.is_available():
        return
    arch = OmegaConf.to_container(cfg.model.transformer, resolve=True)
    teacher = OmegaConf.select(cfg, "module.teacher_arch")
    teacher = OmegaConf.to_container(teacher, resolve=True) if teacher is not None else arch
    props = torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", 0)))
    gpus = int(os.environ.get("WORLD_SIZE", 1))
    check_fits(arch, teacher, OmegaConf.select(cfg, "module.teacher_dtype"), gpus, props.total_memory, props.name)


def check_training_prompts(cfg: DictConfig) -> None:
    """A prompt file for a toy model (its toy text encoder knows only toy words) must hold toy-grammar prompts."""
    prompts = OmegaConf.select(cfg, "data.prompts")
    if prompts is None:  # toy-world scenes: grammatical by construction
        return
    if is_toy_encoder(OmegaConf.select(cfg, "model.text_encoder")):
        check_toy_prompts(read_prompt_file(prompts), cfg.get("strict_prompts", True), f"data.prompts={prompts}")


def cache_settings(module_class: type, callbacks: list) -> dict:
    """The module's rollouts stream with the cache settings of their one owner in a run, the EMA-Sink callback
    (rf.callbacks.ema_sink; `callbacks.ema_sink`, filled from `sink`): {"sink": that callback's CacheConfig itself}
    for a module that streams rollouts (one with a `sink` argument: DistillModule), {} for the others (teacher,
    ODE init). A distillation run without the callback is refused: its rollouts would have no policy."""
    if "sink" not in inspect.signature(module_class).parameters:
        return {}
    owners = [c for c in callbacks if isinstance(c, EMASinkCallback)]
    if not owners:
        raise ValueError(
            f"module={module_class.__name__} streams its rollouts with the cache settings that callbacks.ema_sink "
            "owns, and this run has no callbacks.ema_sink: keep it (choose the policy with sink=NAME, sink.alpha=...)"
        )
    return {"sink": owners[0].config}


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """One Lightning logger per entry of `logger` (conf/logger/), all writing in the run's folder; an entry set to
    false or null (logger.tensorboard=false) is switched off."""
    return [instantiate(c, save_dir=run_dir) for c in cfg.get("logger", {}).values() if c]


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list) -> L.Trainer:
    loggers = build_loggers(cfg, run_dir)
    # checkpoint_every=null: no checkpoints at all (throughput measurements; a full-size one is 40 GB)
    checkpoints = []
    if cfg.checkpoint_every is not None:
        checkpoints.append(LastCheckpoint(run_dir / "checkpoints", every_n_iterations=cfg.checkpoint_every))
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key, value in trainer.items():  # objects: the strategy (trainer=fsdp2), a profiler (trainer/profiler)
        if isinstance(value, dict) and "_target_" in value:
            trainer[key] = instantiate(value)
    return L.Trainer(
        **trainer,
        default_root_dir=run_dir,
        logger=loggers or False,
        callbacks=[*callbacks, *checkpoints],  # last: a checkpoint holds what the others did in its batch (EMA)
        enable_checkpointing=False,
    )


def remove_if_unused(run_dir: Path) -> None:
    """A run that failed before training leaves no folder behind: only Hydra's .hydra/ and job log are in it."""
    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    with contextlib.suppress(OSError):  # several processes may be cleaning up the same folder
        for log in run_dir.glob("*.log"):
            log.unlink(missing_ok=True)
        if run_dir.resolve() != Path.cwd().resolve():
            run_dir.rmdir()


def check_video_size(cfg: DictConfig, module: L.LightningModule) -> None:
    """Modules that decode videos (teacher, distillation) need frames that tile into latent patches."""
    autoencoder = getattr(module, "autoencoder", None)
    if autoencoder is not None and "video" in cfg.model:
        patch = cfg.model.transformer.patch_size[1]
        check_frame_size(cfg.model.video.height, cfg.model.video.width, autoencoder.spatial_factor, patch)


@contextlib.contextmanager
def sigint_as_sigterm(received: list):
    """Ctrl-C stops a run as a scheduler's SIGTERM does: Lightning ends the iteration in hand, LastCheckpoint
    saves it (Lightning's own SIGINT handling exits at once, losing everything since the last checkpoint).
    A second Ctrl-C stops at once. `received` gets the first signal."""

    def forward(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGINT, forward)
    # rf.utils.cli's SIGTERM fallback must not run inside Lightning's handler, which calls an existing one too
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


@entry("train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        check_devices(OmegaConf.to_container(cfg.trainer, resolve=True))
        check_launch(OmegaConf.to_container(cfg.trainer, resolve=True))
        check_memory(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.data)
        check_training_prompts(cfg)
        with torch.random.fork_rng(devices=[]):  # the module's random init draws what it drew before them
            callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]  # null: removed
        build = instantiate(cfg.module, model=cfg.model, optim=cfg.optim, _partial_=True, _recursive_=False)
        module = build(**cache_settings(build.func, callbacks))  # the callback's CacheConfig object, not a copy
        check_video_size(cfg, module)
        ckpt = resolve_ckpt(cfg.ckpt_path, run_dir)  # before the trainer, which prints what it found on this machine
        trainer = build_trainer(cfg, run_dir, callbacks)
    except Exception:
        remove_if_unused(run_dir)
        raise
    if ckpt and trainer.is_global_zero:  # rank 0 speaks for all processes
        print(f"resuming from {ckpt}")
    received: list[signal.Signals] = []
    try:
        with sigint_as_sigterm(received):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    except SIGTERMException:  # Lightning finished the iteration in hand; LastCheckpoint saved it
        sig = received[0] if received else signal.SIGTERM
        if trainer.is_global_zero:
            last = run_dir / "checkpoints" / "last.ckpt"
            kept = f"{last} holds iteration {iteration_of(trainer, module)}" if last.is_file() else "no checkpoint yet"
            print(f"stopped by {sig.name}: {kept}; continue with: {continue_command('rf.train')}", file=sys.stderr)
        sys.exit(128 + int(sig))
    if trainer.is_global_zero:
        last = run_dir / "checkpoints" / "last.ckpt"
        print(f"run folder: {run_dir}  ({f'last checkpoint: {last}' if last.is_file() else 'no checkpoint written'})")


if __name__ == "__main__":
    main()
