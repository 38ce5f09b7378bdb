"""Run rf's entry points the way users do: `python -m rf.<name> key=value ...` in a subprocess.

Also the toy Re-DMD experiment at test size, written as a user's own experiment file (`--config-dir`).
"""

import os
import subprocess
import sys
from pathlib import Path

import yaml

# each subprocess uses the thread count the suite runs under (tests/conftest.py: RF_TEST_THREADS)
THREADS = os.environ.get("RF_TEST_THREADS", "2")

# conf/experiment/toy_re_dmd.yaml shrunk for a fast CPU run: 16x16 video, a one-block Wan of width 64 with 2
# heads, 3 latent frames (one chunk), batch 1, random teacher and student (no toy checkpoints), no TensorBoard.
TINY_RE_DMD = {
    "defaults": ["toy_re_dmd"],
    "model": {
        "video": {"height": 16, "width": 16},
        "transformer": {"num_layers": 1, "ffn_dim": 64, "num_attention_heads": 2},
    },
    "module": {"teacher_ckpt": None, "student_ckpt": None, "latent_frames": 3},
    "data": {"batch_size": 1},
    "logger": {"tensorboard": False},
}


def run_rf(
    module: str, *overrides: str, runs: Path, timeout: int = 300, processes: int = 0
) -> subprocess.CompletedProcess:
    """processes > 0: launch that many with torchrun, as multi-GPU jobs are launched (conf/trainer/fsdp2.yaml)."""
    env = {**os.environ, "RF_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1" if processes else THREADS}
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}"]
        if processes
        else [sys.executable]
    )
    return subprocess.run(
        [*launcher, "-m", f"rf.{module}", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=runs,
        timeout=timeout,
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def merged(base: dict, changes: dict) -> dict:
    """base with changes merged in, section by section (a value that is not a dict replaces)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_tiny_re_dmd(root: Path, name: str = "tiny", **changes) -> list[str]:
    """Write TINY_RE_DMD, with `changes` merged in, to root/conf/experiment/NAME.yaml, and return the arguments
    that select it: `--config-dir=root/conf experiment=NAME`.

    changes: config sections, e.g. module={"max_iterations": 2}, callbacks={"video_log": None} (`null`).
    """
    folder = root / "conf" / "experiment"
    folder.mkdir(parents=True)
    text = yaml.safe_dump(merged(TINY_RE_DMD, changes), sort_keys=False)
    (folder / f"{name}.yaml").write_text(f"# @package _global_\n{text}")
    return [f"--config-dir={root / 'conf'}", f"experiment={name}"]
