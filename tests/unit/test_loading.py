"""Every weight format rf reads lands on the same model: diffusers folders, original-format Wan files, Self
Forcing / Reward Forcing releases (`generator`, `generator_ema`, wrapper prefixes) and rf Lightning checkpoints.

The weights are the golden tiny Wan (original names, tests/data/self_forcing_tiny.pt), written here in each
format; every load must give bit-identical parameters and outputs.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rf.models.causal_wan import CausalWanTransformer3DModel
from rf.models.loading import load_transformer, read_state_dict, to_diffusers_names
from tests.unit.test_golden_parity import GOLDEN, tiny_wan_from_golden


@pytest.fixture(scope="module")
def original():
    golden = torch.load(GOLDEN, weights_only=True)
    config = tiny_wan_from_golden(golden).config  # the golden tiny Wan, built as for the parity tests
    arch = {k: v for k, v in config.items() if not k.startswith("_")}  # its WanTransformer3DModel kwargs
    return arch, dict(golden["state_dict"])


@pytest.fixture(scope="module")
def formats(original, tmp_path_factory):
    """The same weights in every format; the EMA differs from the raw weights by +0.5 everywhere."""
    arch, sd = original
    root = tmp_path_factory.mktemp("weights")
    reference = CausalWanTransformer3DModel(**arch)
    reference.load_state_dict(to_diffusers_names(sd))
    reference.save_pretrained(root / "Wan-Diffusers" / "transformer")
    save_file({k: v.contiguous() for k, v in sd.items()}, root / "original.safetensors")
    torch.save(sd, root / "original.pth")
    ema = {k: v + 0.5 for k, v in sd.items()}
    torch.save(
        {
            "generator": {"model." + k: v for k, v in sd.items()},
            "generator_ema": {"model._fsdp_wrapped_module." + k: v for k, v in ema.items()},
        },
        root / "self_forcing_dmd.pt",
    )
    torch.save({"generator": {"model." + k: v for k, v in sd.items()}}, root / "ode_init.pt")
    lightning = {"state_dict": {"generator." + k: v for k, v in reference.state_dict().items()}}
    torch.save(lightning, root / "last.ckpt")
    return arch, root, reference, ema


def same(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


def output(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 3, 4, 4, generator=g)
    text = torch.randn(1, 8, 64, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([500.0]), text).sample


@pytest.mark.parametrize(
    "source", ["Wan-Diffusers", "Wan-Diffusers/transformer", "original.safetensors", "original.pth", "ode_init.pt",
               "self_forcing_dmd.pt", "last.ckpt"],
)  # fmt: skip
def test_every_format_loads_the_same_weights(formats, source):
    arch, root, reference, _ = formats
    model = load_transformer(arch, root / source, causal=True)[0]
    assert type(model) is CausalWanTransformer3DModel
    assert same(model, reference) == 0.0
    assert torch.equal(output(model), output(reference))


def test_generator_ema_is_taken_on_request(formats):
    arch, root, reference, ema = formats
    model = load_transformer(arch, root / "self_forcing_dmd.pt", causal=True, use_ema=True)[0]
    expected = CausalWanTransformer3DModel(**arch)
    expected.load_state_dict(to_diffusers_names(ema))
    assert same(model, expected) == 0.0
    assert same(model, reference) == pytest.approx(0.5)


def test_missing_ema_names_the_alternative(formats):
    arch, root, _, _ = formats
    with pytest.raises(ValueError, match=r"has no 'generator_ema'.*use_ema=false"):
        load_transformer(arch, root / "ode_init.pt", causal=True, use_ema=True)[0]


def test_wrong_size_names_both_sizes_before_building(formats, monkeypatch):
    arch, root, _, _ = formats
    built = []
    monkeypatch.setattr(CausalWanTransformer3DModel, "__init__", lambda *a, **k: built.append(1))
    bigger = {**arch, "num_layers": 3}
    for source in ("original.safetensors", "self_forcing_dmd.pt", "Wan-Diffusers"):
        with pytest.raises(ValueError, match=r"another model size, a Wan of width 64, 2 blocks.*is width 64, 3 b"):
            load_transformer(bigger, root / source, causal=True)[0]
    assert not built  # refused before the model was allocated


def test_incomplete_folder_lists_the_missing_files(formats, tmp_path):
    arch, root, _, _ = formats
    folder = tmp_path / "Wan" / "transformer"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text((root / "Wan-Diffusers" / "transformer" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing diffusion_pytorch_model.safetensors"):
        load_transformer(arch, tmp_path / "Wan", causal=True)[0]


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"generator": {"x": torch.zeros(1)}, "cfg": Path("/")}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)


def test_dtype_from_a_config_string(formats):
    arch, root, _, _ = formats
    folder = load_transformer(arch, root / "Wan-Diffusers", dtype="bf16")[0]
    file = load_transformer(arch, root / "original.pth", dtype="bf16")[0]
    for model in (folder, file):
        assert model.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
        assert model.scale_shift_table.dtype == torch.float32  # diffusers keeps these in fp32
    assert {n: p.dtype for n, p in folder.named_parameters()} == {n: p.dtype for n, p in file.named_parameters()}
