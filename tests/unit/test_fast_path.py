"""Every switch of the exact fast path computes the plain path's function (fp32, CPU, tiny model)."""

import pytest
import torch

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.models.cache import CacheConfig
from rf.models.causal_wan import CausalWanTransformer3DModel
from rf.models.compile import compile_blocks
from tests.conftest import tiny_wan_config


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("policy", ["ema_sink"])
def test_compiled_blocks_stream_the_same_video(policy):
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 15, 4, 4)  # 5 chunks: the window fills, then evicts and fuses
    cache = CacheConfig(policy=policy, sink_frames=3, attention_frames=9)
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        compile_blocks(model)
        out = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
    assert all(hasattr(block, "_compiled_call_impl") and block._compiled_call_impl for block in model.blocks)
    assert relative_error(out, ref) < 1e-5
