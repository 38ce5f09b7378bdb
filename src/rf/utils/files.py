"""Files rf writes and reads back: atomic writes, versioned JSON, prompt files, and checks on weight folders.

atomic_write(path, write_fn)       readers see the old file or the new one, never half of one
replace_file(tmp, path)            the same last step, for a file written elsewhere (a stream, a collective)
read_versioned_json(path, ...)     a small JSON manifest of a known version, or one line saying how to fix it
read_prompt_file(path, key=...)    one prompt per line of a UTF-8 text file; errors name the config key
require_files(folder, ...)         a weights folder lacking files: one line naming every missing one
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

# Byte-order marks of the encodings an editor may save a text file in that is not UTF-8 (UTF-8's own is dropped).
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def replace_file(tmp: str | Path, path: str | Path, fsync: bool = True, fsync_dir: bool = False) -> None:
    """Move the finished file `tmp` onto `path` atomically (os.replace): a reader sees the old file or the new.

    fsync: flush tmp to disk first, so a power cut cannot leave the final name on missing data.
    fsync_dir: flush the folder after the rename too, so the rename itself cannot be undone by a power cut.
    """
    path = Path(path)
    if fsync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)
    if fsync_dir:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | Path,
    write_fn: Callable[[Path], object],
    fsync: bool = True,
    tmp: str | Path | None = None,
    fsync_dir: bool = False,
) -> Path:
    """Write `path` through a temp file: write_fn(tmp) writes the whole file, then `replace_file` moves it in.

    tmp defaults to `<name>.<pid>.tmp` beside path: data-parallel ranks may write the same file at the same
    moment, and a left-over temp file names the write a killed process never finished. Returns path.
    """
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write_fn(tmp)
    replace_file(tmp, path, fsync=fsync, fsync_dir=fsync_dir)
    return path


def read_versioned_json(path: str | Path, version: int, fix: str) -> dict | None:
    """A JSON object with `"version": version` at path -> the object; None if there is no file.

    A file that is not JSON, not an object or of another version raises ValueError naming the path and what it
    found, followed by `fix` (what the user should do: "delete FOLDER and fill it again").
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): {fix}") from err
    if not isinstance(data, dict) or data.get("version") != version:
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} has version {found!r}, this code reads {version}: {fix}")
    return data


def read_prompt_file(path: str | Path, key: str = "data.prompts") -> list[str]:
    """One prompt per line of a UTF-8 text file (a UTF-8 byte-order mark is dropped, blank lines skipped).

    A file in another encoding (UTF-16 from a Windows editor, Latin-1) or a binary file is refused with a line
    that says what it is and how to convert it: read as UTF-8 it would give mojibake prompts, silently. Every
    message names the config key the path came from (`key`: data.prompts for training, prompts for eval).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such prompt file (one prompt per line)")
    data = path.read_bytes()
    bom = next((name for mark, name in _BOMS.items() if data.startswith(mark)), None)
    if bom is not None:
        raise ValueError(
            f"{key}={path} is not UTF-8 text but {bom} (it starts with a {bom} byte-order mark): convert it, "
            f"e.g. `iconv -f {bom} -t UTF-8 {path.name} > prompts.txt`"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{key}={path} is not UTF-8 text (byte {err.start} is not UTF-8): a binary file, or text in "
            f"another encoding such as Latin-1; convert it, e.g. `iconv -f LATIN1 -t UTF-8 {path.name} > prompts.txt`"
        ) from err
    if "\x00" in text:
        raise ValueError(f"{key}={path} is not UTF-8 text (it holds NUL bytes: a binary file?)")
    lines = text.splitlines()
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{key}={path} holds no prompts (one prompt per line)")
    return prompts


def require_files(folder: str | Path, expected: list[str | tuple[str, ...]], what: str) -> None:
    """Raise FileNotFoundError listing what `folder` lacks; a tuple in `expected` means any one of its names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist (set paths.weights to your weights folder)")
    missing = [e for e in expected if not any((folder / n).exists() for n in ((e,) if isinstance(e, str) else e))]
    if missing:
        names = ", ".join(e if isinstance(e, str) else " or ".join(e) for e in missing)
        raise FileNotFoundError(f"{what} folder {folder} is incomplete: missing {names}")
