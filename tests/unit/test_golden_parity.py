"""Numerical parity with the published Self Forcing code (tests/data/self_forcing_tiny.README.md).

A tiny causal Wan with seeded weights in the original Wan naming streamed 7 chunks through the
reference pipeline; rf's loader, causal model, `full` cache and StreamSampler must reproduce every
chunk. A wrong RoPE offset, cache or schedule moves the outputs by 1e-1 or more.
"""

from pathlib import Path

import pytest
import torch

from rf.diffusion.sampler import StreamSampler, TensorNoise
from rf.models.cache import CacheConfig
from rf.models.causal_wan import CausalWanTransformer3DModel
from rf.models.loading import load_state, to_diffusers_names

GOLDEN = Path(__file__).parents[1] / "data" / "self_forcing_tiny.pt"


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def tiny_wan_from_golden(golden) -> CausalWanTransformer3DModel:
    k = golden["config"]["causal_wan_model_kwargs"]
    model = CausalWanTransformer3DModel(
        patch_size=tuple(k["patch_size"]),
        num_attention_heads=k["num_heads"],
        attention_head_dim=k["dim"] // k["num_heads"],
        in_channels=k["in_dim"],
        out_channels=k["out_dim"],
        text_dim=k["text_dim"],
        freq_dim=k["freq_dim"],
        ffn_dim=k["ffn_dim"],
        num_layers=k["num_layers"],
        cross_attn_norm=k["cross_attn_norm"],
        eps=k["eps"],
    )
    load_state(model, to_diffusers_names(golden["state_dict"]), "original Wan checkpoint")
    return model.eval()


def test_schedule_matches_reference(golden):
    sampler = StreamSampler(torch.nn.Linear(1, 1), CacheConfig(policy="full"))
    torch.testing.assert_close(torch.tensor(sampler.timesteps), golden["config"]["warped_timesteps"])


def test_first_forward_matches_reference(golden):
    model = tiny_wan_from_golden(golden)
    x = golden["first_forward_input"].permute(0, 2, 1, 3, 4)  # [B, F, C, H, W] -> [B, C, F, H, W]
    with torch.no_grad():
        cache = model.new_cache(CacheConfig(policy="full"))
        out = model(x, golden["first_forward_timestep"], golden["text_embeds"], cache=cache).sample
    err = (out.permute(0, 2, 1, 3, 4) - golden["first_forward_output"]).abs().max().item()
    assert err < 1e-4, err


def test_stream_matches_reference(golden):
    model = tiny_wan_from_golden(golden)
    noise = golden["noise"]
    chunks = golden["config"]["num_chunks"]
    # renoise [chunks, steps, B*F, C, H, W] -> [chunks, steps, B, C, F, H, W]
    renoise = noise["renoise"].unflatten(2, (1, 3)).permute(0, 1, 2, 4, 3, 5, 6)
    source = TensorNoise(noise["initial"].permute(0, 2, 1, 3, 4), renoise, chunk_frames=3)
    sampler = StreamSampler(model, CacheConfig(policy="full"), denoising_steps=(1000, 750, 500, 250), shift=5.0)
    with torch.no_grad():
        out = [ch.latents for ch in sampler.stream([(0, golden["text_embeds"])], (1, 16, 3 * chunks, 4, 4), source)]
    assert len(out) == chunks
    for c, x0 in enumerate(out):
        ref = golden["outputs_per_chunk"][c]  # [1, 3, 16, 4, 4]
        err = (x0.permute(0, 2, 1, 3, 4) - ref).abs().max().item()
        assert err < 1e-4, f"chunk {c}: max abs error {err:.2e}"
