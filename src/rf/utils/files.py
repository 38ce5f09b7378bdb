"""Checks on local weight folders: one line naming the folder and every file it lacks, before anything loads."""

from __future__ import annotations

from pathlib import Path


def require_files(folder: str | Path, expected: list[str | tuple[str, ...]], what: str) -> None:
    """Raise FileNotFoundError listing what `folder` lacks; a tuple in `expected` means any one of its names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist (set paths.weights to your weights folder)")
    missing = [e for e in expected if not any((folder / n).exists() for n in ((e,) if isinstance(e, str) else e))]
    if missing:
        names = ", ".join(e if isinstance(e, str) else " or ".join(e) for e in missing)
        raise FileNotFoundError(f"{what} folder {folder} is incomplete: missing {names}")
