"""What an evaluation is asked to do: its prompts, its name and folder, the runs to compare, and checks of the
videos it will score, all before any model is loaded or any file written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from rf.eval.layout import VideoEntry
from rf.eval.toy_truth import is_toy_prompt
from rf.toy.world import ToyWorld
from rf.utils.files import read_prompt_file
from rf.utils.video import probe

TOY_PROMPT_SEED = 1_000_000_007  # toy scenes for evaluation: a seed stream training prompts do not reach
MIN_SIDE = 16


def load_prompts(cfg: DictConfig) -> list[str]:
    """The prompt file's lines (duplicates dropped), or `toy_prompts` toy-world scenes for a toy model."""
    if cfg.prompts is None:
        if not str(cfg.model.name).startswith("toy"):
            raise ValueError(
                f"prompts=null with model={cfg.model.name}: give a prompt file, one prompt per line "
                f"(e.g. prompts={cfg.paths.prompts}/vbench_all_dimension.txt); toy-world prompts only fit toy models"
            )
        if cfg.toy_prompts < 1:
            raise ValueError(f"toy_prompts={cfg.toy_prompts}: give at least 1 (or a prompt file: prompts=FILE)")
        video = cfg.model.video
        world = ToyWorld(height=video.height, width=video.width, fps=video.fps, **dict(cfg.model.get("world") or {}))
        lines = [world.sample_scene(TOY_PROMPT_SEED + i).prompt() for i in range(cfg.toy_prompts)]
    else:
        lines = read_prompt_file(cfg.prompts, key="prompts")
    prompts = list(dict.fromkeys(lines))
    if len(prompts) < len(lines):
        print(f"prompts: {len(lines) - len(prompts)} duplicate lines ignored ({len(prompts)} prompts)")
    return prompts


def run_name(cfg: DictConfig) -> str:
    """name=, or one made from what is evaluated: e.g. toy_re_dmd-ema_sink-ema for runs/toy_re_dmd/checkpoints/."""
    if cfg.name:
        return str(cfg.name)
    if cfg.runs:
        return "compare-" + "-".join(Path(r).name for r in run_list(cfg))
    if cfg.videos:
        folder = Path(cfg.videos).resolve()
        return folder.parent.name if folder.name == "videos" else folder.name
    if cfg.ckpt:
        ckpt = Path(cfg.ckpt)
        base = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.stem
    else:
        base = f"random-{cfg.model.name}"
    return f"{base}-{cfg.sink.policy}" + ("-ema" if cfg.use_ema else "")


def out_dir(cfg: DictConfig, name: str) -> Path:
    return Path(cfg.out) if cfg.out else Path(cfg.paths.runs) / "eval" / name


def run_list(cfg: DictConfig) -> list[str]:
    """runs=[a, b] or runs="a,b" -> ["a", "b"]."""
    runs = cfg.runs
    items = list(runs) if isinstance(runs, ListConfig | list | tuple) else str(runs).split(",")
    return [str(r).strip() for r in items if str(r).strip()]


def run_folders(cfg: DictConfig) -> list[Path]:
    """Each run: a folder, or a name under ${paths.runs}/eval/."""
    folders = []
    for r in run_list(cfg):
        folder = Path(r) if Path(r).is_dir() else Path(cfg.paths.runs) / "eval" / r
        if not folder.is_dir():
            raise FileNotFoundError(
                f"runs: {r!r} is neither a folder nor an evaluation under {Path(cfg.paths.runs) / 'eval'}"
            )
        folders.append(folder)
    if len(folders) < 2:
        raise ValueError(f"runs={run_list(cfg)}: give at least 2 evaluations to compare, e.g. runs=[a,b]")
    return folders


def check_videos(folder: Path, entries: list[VideoEntry], min_frames: int, size: tuple[int, int] | None) -> float:
    """Every video readable, of one size (`size` (H, W), or the most common) and frame rate, long enough for
    the metrics; records frames, fps and size in the entries -> the frame rate."""
    infos = {}
    for e in entries:
        try:
            infos[e.file] = probe(folder / e.file)
        except Exception as err:  # PyAV raises its own error types for unreadable files
            raise ValueError(f"{folder / e.file} is not a readable video ({err}): remove or replace it") from err
    sizes = Counter((i["height"], i["width"]) for i in infos.values())
    want = size or sizes.most_common(1)[0][0]
    rates = Counter(i["fps"] for i in infos.values())
    fps = rates.most_common(1)[0][0]
    if min(want) < MIN_SIDE:
        raise ValueError(f"videos of {want[1]}x{want[0]} are too small to score: the metrics need sides >= {MIN_SIDE}")
    for e in entries:
        info = infos[e.file]
        if (info["height"], info["width"]) != want:
            raise ValueError(
                f"{folder / e.file} is {info['width']}x{info['height']}, the others {want[1]}x{want[0]}: the metrics "
                f"compare videos of one size; re-export it at {want[1]}x{want[0]} or remove it"
            )
        if info["fps"] != fps:
            raise ValueError(
                f"{folder / e.file} plays at {info['fps']:g} fps, the others at {fps:g}: use one frame rate"
            )
        if info["frames"] < min_frames:
            raise ValueError(
                f"{folder / e.file} has {info['frames']} frames; the metrics need at least {min_frames} "
                "(a second metrics.copying segment): make longer videos or lower metrics.copying.segment_frames"
            )
        e.frames, e.fps, e.height, e.width = info["frames"], info["fps"], info["height"], info["width"]
    return fps


def use_toy_truth(setting, entries: list[VideoEntry]) -> bool:
    """toy_truth=auto: on when every prompt of every schedule is a toy-world prompt; true: they must be."""
    prompts = {s["prompt"] for e in entries for s in e.schedule} | {e.prompt for e in entries}
    bad = next((p for p in sorted(prompts) if not is_toy_prompt(p)), None)
    if setting == "auto":
        return bad is None
    if setting and bad is not None:
        raise ValueError(f"toy_truth=true but {bad!r} is not a toy-world prompt: use toy_truth=auto or false")
    return bool(setting)
