"""Run rf's entry points the way users do: `python -m rf.<name> key=value ...` in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path


def run_rf(module: str, *overrides: str, runs: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RF_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", f"rf.{module}", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=runs,
        timeout=timeout,
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())
