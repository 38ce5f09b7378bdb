"""Run rf's entry points the way users do: `python -m rf.<name> key=value ...` in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path


def run_rf(
    module: str, *overrides: str, runs: Path, timeout: int = 300, processes: int = 0
) -> subprocess.CompletedProcess:
    """processes > 0: launch that many with torchrun, as multi-GPU jobs are launched (conf/trainer/fsdp2.yaml)."""
    env = {**os.environ, "RF_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1" if processes else "2"}
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
