"""Where an evaluation keeps its videos: VBench's folder layout plus a manifest of what each file holds.

    OUT/videos/{prompt}-{i}.mp4   VBench's naming for sampled prompts: the prompt text is the file name, i the
                                  seed index 0..seeds-1, so `vbench evaluate --videos_path OUT/videos` works as is
    OUT/manifest.json             file -> prompt, prompt schedule, seed index, seed, frames, fps, size; and the
                                  generation settings, so a rerun with other settings cannot mix its videos in
    OUT/index.csv                 the same, one row per file

VBench reads a prompt back from a file name by dropping a trailing `-<number>` (vbench/utils.py,
get_prompt_from_filename). A prompt cannot always be a file name: `/` and control characters become `_`, and a
prompt longer than MAX_NAME_BYTES (UTF-8) is cut there and given a checksum, so names stay unique and under
the 255-byte limit with `.partial.mp4` added. The manifest always keeps the full prompt.

Per-video seeds depend on the prompt text and seed index only (crc32), not on the prompt's line number: the
same prompt gets the same noise in every run and whatever the order of the list, so runs compare pairwise.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rf.utils.files import atomic_write

VIDEO_DIR = "videos"
MANIFEST = "manifest.json"
MAX_NAME_BYTES = 180
_UNSAFE = re.compile(r"[/\x00-\x1f\x7f]")
_NUMBER_ENDING = re.compile(r"-(\d+)$")


@dataclass
class VideoEntry:
    file: str  # name inside the videos folder
    prompt: str  # the prompt at frame 0
    seed_index: int = 0
    seed: int | None = None
    schedule: list[dict] = field(default_factory=list)  # [{at: seconds, frame: first frame, prompt}], first at 0
    frames: int | None = None
    fps: float | None = None
    height: int | None = None
    width: int | None = None

    def switches(self, fps: float) -> list[tuple[int, str]]:
        """[(first frame, prompt), ...]: the schedule in frames (from `at` where no frame was recorded)."""
        if not self.schedule:
            return [(0, self.prompt)]
        return [
            (int(s["frame"]) if s.get("frame") is not None else round(s["at"] * fps), s["prompt"])
            for s in self.schedule
        ]


def safe_name(prompt: str) -> str:
    """A prompt as a file-name stem: unchanged when possible (VBench reads it back), else made safe and short."""
    name = _UNSAFE.sub("_", prompt.strip())
    if name.startswith("."):
        name = "_" + name[1:]
    raw = name.encode("utf-8")
    if len(raw) <= MAX_NAME_BYTES:
        return name
    cut = raw[: MAX_NAME_BYTES - 9].decode("utf-8", errors="ignore").rstrip()
    return f"{cut}~{zlib.crc32(prompt.encode('utf-8')):08x}"


def video_name(prompt: str, seed_index: int) -> str:
    return f"{safe_name(prompt)}-{seed_index}.mp4"


def prompt_from_name(name: str) -> tuple[str, int]:
    """VBench's rule: `prompt-3.mp4` -> ("prompt", 3); a name without `-<number>` is seed index 0."""
    stem = Path(name).stem
    match = _NUMBER_ENDING.search(stem)
    return (stem[: match.start()], int(match.group(1))) if match else (stem, 0)


def seed_for(base: int, prompt: str, seed_index: int) -> int:
    return zlib.crc32(f"{base}|{seed_index}|{prompt}".encode()) & 0x7FFFFFFF


def plan_videos(prompts: list[str], seeds: int, base_seed: int, switch_at: float | None) -> list[VideoEntry]:
    """Every video of a generation run, prompt-major: with switch_at, each switches to the next prompt."""
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: give at least 1 video per prompt")
    if switch_at is not None and (switch_at <= 0 or len(prompts) < 2):
        raise ValueError(f"switch_at={switch_at} needs a time > 0 s and at least 2 prompts (each switches to the next)")
    names: dict[str, str] = {}
    entries = []
    for p, prompt in enumerate(prompts):
        stem = safe_name(prompt)
        if stem in names:  # two prompts that differ only in characters a file name cannot hold
            stem = f"{stem}~{zlib.crc32(prompt.encode('utf-8')):08x}"
        names[stem] = prompt
        schedule = [{"at": 0.0, "prompt": prompt}]
        if switch_at is not None:
            schedule.append({"at": float(switch_at), "prompt": prompts[(p + 1) % len(prompts)]})
        for i in range(seeds):
            entries.append(VideoEntry(f"{stem}-{i}.mp4", prompt, i, seed_for(base_seed, prompt, i), schedule))
    return entries


class Manifest:
    """OUT/manifest.json and OUT/index.csv: the finished videos and the settings that made them."""

    def __init__(self, out: Path, settings: dict | None = None, videos: dict[str, VideoEntry] | None = None):
        self.out, self.settings, self.videos = Path(out), settings or {}, videos or {}

    @classmethod
    def load(cls, path: Path) -> Manifest | None:
        """The manifest in folder `path` (or that file), None if there is none."""
        file = path if path.suffix == ".json" else path / MANIFEST
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            videos = {name: VideoEntry(**entry) for name, entry in data["videos"].items()}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{file} is not an rf evaluation manifest ({err}): delete it or choose another out="
            ) from err
        return cls(file.parent, data.get("settings", {}), videos)

    def save(self) -> None:
        videos = {name: asdict(e) for name, e in sorted(self.videos.items())}
        text = json.dumps({"settings": self.settings, "videos": videos}, indent=1)
        atomic_write(self.out / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=False)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["file", "prompt", "seed_index", "seed", "frames", "fps", "height", "width", "schedule"])
        for name, e in sorted(self.videos.items()):
            switches = " | ".join(f"{s['at']:g}s: {s['prompt']}" for s in e.schedule[1:])
            writer.writerow([name, e.prompt, e.seed_index, e.seed, e.frames, e.fps, e.height, e.width, switches])
        atomic_write(
            self.out / "index.csv", lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"), fsync=False
        )


def settings_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    """The first key whose value differs, as 'key: old -> new', or None."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if found := settings_difference(a, b, f"{prefix}{key}."):
                return found
        elif a != b:
            return f"{prefix}{key}: {a} -> {b}"
    return None


def find_manifest(folder: Path) -> Manifest | None:
    """A videos folder's manifest: in it, or in its parent (OUT/videos -> OUT/manifest.json)."""
    return Manifest.load(folder) or Manifest.load(folder.parent)


def index_folder(folder: Path, prompts: list[str] | None) -> list[VideoEntry]:
    """The videos of `folder` to score, prompts from its manifest or else from the file names.

    With `prompts`, only videos of those prompts, and every prompt must have at least one.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"videos={folder}: no such folder (give a folder of .mp4 files)")
    files = sorted(p.name for p in folder.glob("*.mp4") if not p.name.endswith(".partial.mp4"))
    if not files:
        raise ValueError(f"videos={folder} holds no finished .mp4 files (NAME.partial.mp4 are unfinished)")
    manifest = find_manifest(folder)
    known = manifest.videos if manifest is not None else {}
    entries = []
    for name in files:
        if name in known:
            entries.append(known[name])
        else:
            prompt, index = prompt_from_name(name)
            entries.append(VideoEntry(name, prompt, index))
    if prompts is None:
        return entries
    # a name-derived prompt is the safe name of the real one: compare safe names on both sides
    by_name: dict[str, list[VideoEntry]] = {}
    for e in entries:
        by_name.setdefault(safe_name(e.prompt), []).append(e)
    missing = [p for p in prompts if safe_name(p) not in by_name]
    if missing:
        raise ValueError(
            f"the prompt list has {len(prompts)} prompts but videos={folder} holds videos for only "
            f"{len(prompts) - len(missing)} of them; none for {missing[0]!r} (expected {video_name(missing[0], 0)!r})"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}: add those videos, or give the "
            "prompt file these videos were made from"
        )
    return [e for p in dict.fromkeys(prompts) for e in by_name[safe_name(p)]]
