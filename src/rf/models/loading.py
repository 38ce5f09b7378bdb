"""Weights in, from local disk only: diffusers folders, original-format Wan, Self Forcing / Reward Forcing
releases, and rf's own Lightning checkpoints, all onto diffusers parameter names.

    diffusers folder   Wan2.1-T2V-1.3B-Diffusers/ (or its transformer/ subfolder): `from_pretrained`,
                       local_files_only=True, dtype resolved from its config string
    original Wan       diffusion_pytorch_model.safetensors / .pth with `blocks.0.self_attn.q.weight` names
    Self Forcing       ode_init.pt, self_forcing_dmd.pt, Reward Forcing's rewardforcing.pt:
                       {"generator": sd, "generator_ema": sd, ...}, names `model.blocks.0.self_attn.q.weight`,
                       sometimes with FSDP / checkpoint-wrapper prefixes
    rf Lightning       last.ckpt: `state_dict` under generator.* / transformer.*, the EMA in callbacks

The original -> diffusers renaming table is diffusers' own (`convert_wan_transformer_to_diffusers`, the code
behind `WanTransformer3DModel.from_single_file`); this module only feeds it plain tensors. Files are read with
safetensors or `torch.load(weights_only=True)`: tensors and plain containers, never arbitrary pickles.
Before any model is allocated, the checkpoint's size (width, depth, text width) is compared with the configured
one, so a 14B checkpoint given to a 1.3B config fails in a second with both sizes named.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors import SafetensorError

from rf.models.causal_wan import CausalWanTransformer3DModel
from rf.utils.cli import one_line
from rf.utils.files import require_files
from rf.utils.instantiate import resolve_dtype

# rf's own checkpoints, named once here where they are read (models/ is below lit/ and callbacks/): GeneratorEMA's
# key in ckpt["callbacks"] and the key of its weights, which the callback takes from here, and the transformer
# attributes of rf's LightningModules in order of preference (DistillModule, ODEInitModule: the student;
# TeacherModule: the teacher). tests/integration/test_distill.py reads a trained checkpoint back through them.
STUDENT_ATTRIBUTE, TEACHER_ATTRIBUTE = "generator", "transformer"
EMA_STATE_KEY, EMA_WEIGHTS = "GeneratorEMA", "shadow"
STUDENT_PREFIXES = (f"{STUDENT_ATTRIBUTE}.", f"{TEACHER_ATTRIBUTE}.")
# Published sizes (Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers, transformer/config.json): (width, blocks) -> name.
WAN_SIZES = {(1536, 30): "Wan2.1 1.3B", (5120, 40): "Wan2.1 14B"}
# Wrappers that training frameworks put in front of parameter names (FSDP1, activation checkpointing,
# torch.compile, DDP) and Self Forcing's WanDiffusionWrapper (`model.`).
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.", "module.")
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


# ----- sizes -------------------------------------------------------------------------------------------


def describe_size(dim: int, layers: int, text_dim: int | None = None) -> str:
    name = WAN_SIZES.get((dim, layers))
    text = f", text width {text_dim}" if text_dim is not None else ""
    return f"width {dim}, {layers} blocks{text}" + (f" ({name})" if name else "")


def size_of_arch(arch: dict) -> tuple[int, int, int]:
    """WanTransformer3DModel kwargs -> (width, blocks, text width)."""
    return arch["num_attention_heads"] * arch["attention_head_dim"], arch["num_layers"], arch["text_dim"]


def size_of_state(state: dict[str, torch.Tensor], source: str = "the state dict") -> tuple[int, int, int | None]:
    """A diffusers-named transformer state dict -> (width, blocks, text width)."""
    if "patch_embedding.weight" not in state:
        some = ", ".join(sorted(state)[:3]) or "nothing"
        raise ValueError(
            f"{source} is not a Wan transformer checkpoint (no patch_embedding.weight; it holds {some}, ...): "
            "point to a transformer checkpoint (rf's last.ckpt, a Self Forcing .pt, Wan weights)"
        )
    dim = state["patch_embedding.weight"].shape[0]
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    text = state.get("condition_embedder.text_embedder.linear_1.weight")
    return dim, layers, (text.shape[1] if text is not None else None)


def check_size(found: tuple, arch: dict, source, what: str = "model") -> None:
    """Refuse weights of another size, naming both, before anything big is built."""
    want = size_of_arch(arch)
    if tuple(found[:2]) != want[:2] or (found[2] is not None and found[2] != want[2]):
        raise ValueError(
            f"{source} holds another model size, a Wan of {describe_size(*found)}; the configured {what} is "
            f"{describe_size(*want)}: pick the model= config of that size (wan_1_3b, wan_14b) or other weights"
        )


# ----- folders -----------------------------------------------------------------------------------------


def transformer_folder(path: str | Path) -> Path:
    """A diffusers pipeline folder or its transformer/ subfolder -> the checked transformer folder."""
    path = Path(path)
    if (path / "transformer").is_dir():
        path = path / "transformer"
    require_files(path, ["config.json", _WEIGHT_FILES], "diffusers transformer")
    return path


# ----- files -------------------------------------------------------------------------------------------


def damaged(path: Path, err: BaseException, what: str = "checkpoint") -> ValueError:
    """The one message for a weights file that does not read: what the reader said, and what to do."""
    reason = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
    size = path.stat().st_size if path.is_file() else 0
    state = "is empty (0 bytes)" if size == 0 else f"is damaged or not a {what} ({reason[:160]})"
    return ValueError(f"{path} {state}: copy or download it again, or point to another {what}")


def check_torch_file(path: Path, what: str = "checkpoint") -> None:
    """Refuse a file that cannot be a whole torch.save file, before torch reads it: torch.save writes a zip archive
    (its central directory, at the end, is the first thing a truncated file loses) or, before torch 1.6, a pickle
    (protocol 2+ starts with byte 0x80). torch's own errors for these are misleading (a text file: IndexError)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise damaged(path, EOFError(), what)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise damaged(path, ValueError(f"a zip archive cut short or damaged: {err}"), what) from err
    elif head[0] != 0x80:
        raise damaged(path, ValueError("neither a zip archive nor a pickle"), what)


def _load_file(path: Path) -> dict:
    """A safetensors or torch.save file -> its content; a file that does not read raises ValueError naming it.

    Truncated, empty or foreign files fail inside the readers with their own errors (safetensors' header errors,
    torch's zip / EOF / unpickling errors, IndexError on a short text file): each becomes one ValueError.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise damaged(path, err, "safetensors file") from err
    check_torch_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err).lower():  # not a refused Python object: a damaged pickle
            raise damaged(path, err) from err
        raise ValueError(
            f"{path} holds Python objects, not only tensors; rf loads with torch.load(weights_only=True) and "
            f"will not unpickle it: re-save its state dict (torch.save(model.state_dict(), ...))"
        ) from err
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, OSError) as err:
        raise damaged(path, err) from err


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for p in _WRAPPER_PREFIXES:
            k = k.replace(p, "")
        if k.startswith("model.") and not k.startswith("model.diffusion_model."):
            k = k[len("model.") :]  # Self Forcing's WanDiffusionWrapper keeps the Wan under .model
        out[k] = v
    return out


def to_diffusers_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan names (`blocks.0.self_attn.q.weight`), with any wrapper prefixes, -> diffusers names
    (`blocks.0.attn1.to_q.weight`); a state dict already in diffusers names passes unchanged."""
    state = _strip(state)
    if any(".self_attn." in k or k.startswith("head.head") or "diffusion_model." in k for k in state):
        return convert_wan_transformer_to_diffusers(dict(state))
    return state


def _from_lightning(ckpt: dict, path, prefixes: tuple[str, ...], use_ema: bool) -> tuple[dict, str]:
    state = ckpt["state_dict"]
    if use_ema:
        shadow = ckpt.get("callbacks", {}).get(EMA_STATE_KEY, {}).get(EMA_WEIGHTS)
        if shadow is None:
            raise ValueError(f"ckpt={path} holds no generator EMA (it starts at start_iteration): use_ema=false")
        return dict(shadow), "generator EMA"
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub, prefix.rstrip(".")
    raise ValueError(f"ckpt={path} holds no transformer weights (looked for {', '.join(prefixes)}*)")


def read_state_dict(
    path: str | Path, prefixes: tuple[str, ...] = STUDENT_PREFIXES, use_ema: bool = False
) -> tuple[dict[str, torch.Tensor], str]:
    """Any supported checkpoint file -> (diffusers-named transformer state dict, which weights were taken)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt={path}: no such checkpoint file")
    ckpt = _load_file(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"ckpt={path} is not a state dict or checkpoint (found {type(ckpt).__name__})")
    if isinstance(ckpt.get("state_dict"), dict):  # rf / Lightning
        state, found = _from_lightning(ckpt, path, prefixes, use_ema)
    elif "generator" in ckpt or "generator_ema" in ckpt:  # Self Forcing, Reward Forcing
        key = "generator_ema" if use_ema else "generator"
        if key not in ckpt:
            other = "use_ema=false" if use_ema else "use_ema=true"
            raise ValueError(f"ckpt={path} has no {key!r} (it holds {sorted(ckpt)}): try {other}")
        state, found = ckpt[key], key
    else:
        state, found = ckpt, "state dict"
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(
            f"ckpt={path} is a checkpoint of another kind: its {found} is not a table of named tensors (an optimiser "
            "state or a pickled object?): point to model weights (rf's last.ckpt, a Self Forcing .pt, Wan weights)"
        )
    return to_diffusers_names(state), found


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source) -> None:
    """Load a diffusers-named state dict; every key must match, shapes first (a clear size message)."""
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"{source} holds another model size: {k} is {tuple(state[k].shape)}, the configured model has "
            f"{tuple(own[k].shape)}; pick the matching model= config"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {type(model).__name__}: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )


# ----- the entry points ----------------------------------------------------------------------------------


def load_transformer(arch, init=None, causal=False, prefixes=STUDENT_PREFIXES, use_ema=False, dtype=None):
    """A Wan transformer of architecture `arch` (WanTransformer3DModel kwargs), bidirectional or causal
    -> (model, which weights were taken: "random", "generator_ema", ...).

    init: None (random), a diffusers folder (pipeline or transformer/), or a checkpoint file of any kind above.
    The size of the weights is checked against `arch` before the model is allocated.
    """
    cls = CausalWanTransformer3DModel if causal else WanTransformer3DModel
    dtype = resolve_dtype(dtype) if dtype is not None else None
    if init is not None and Path(init).is_dir():
        folder = transformer_folder(init)
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            size = size_of_arch(config)
        except (ValueError, KeyError, TypeError) as err:  # not JSON, or not a Wan transformer's config
            raise damaged(folder / "config.json", err, "diffusers transformer config") from err
        check_size(size, arch, folder)
        try:  # its safetensors shards: a truncated or foreign shard fails in diffusers with its own error types
            model = cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype or torch.float32)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
            raise ValueError(
                f"{folder} holds damaged or incomplete weights ({one_line(err)[:200]}): copy or download the folder "
                "again"
            ) from err
        return model, "diffusers folder"
    state, found = (None, "random") if init is None else read_state_dict(init, prefixes, use_ema)
    if state is not None:
        check_size(size_of_state(state, f"ckpt={init}"), arch, f"ckpt={init}")
    model = cls(**arch)
    if state is not None:
        load_state(model, state, f"ckpt={init}")
    return (cast(model, dtype) if dtype is not None else model), found


def cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """model.to(dtype), keeping in fp32 the modules diffusers keeps in fp32 (`_keep_in_fp32_modules`: time
    embedding, modulation tables, norms), as `from_pretrained(torch_dtype=...)` does."""
    torch.nn.Module.to(model, dtype)  # diffusers' own .to() warns about the fp32 modules handled just below
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, param in model.named_parameters():
        if keep & set(name.split(".")):
            param.data = param.data.float()
    return model
