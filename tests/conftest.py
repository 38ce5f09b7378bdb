import getpass
import os
import tempfile

# The suite's thread count: 2 by default (CI's cores); RF_TEST_THREADS=1 runs it again with another summation
# order in every parallel reduction, which the numerical tests' tolerances must cover (.ci/run does both).
THREADS = int(os.environ.get("RF_TEST_THREADS", "2"))
# torch.compile's C++ kernels are cached on disk (/tmp/torchinductor_USER) under a key that leaves out
# ATEN_CPU_CAPABILITY: a kernel built under ATEN_CPU_CAPABILITY=avx2 (a way to run the suite as on a CPU without
# AVX-512) aborts the process when a later run under the default capability loads it (torch 2.13). One cache per
# capability and thread count, set before torch is imported (it reads the variable once); subprocesses
# (tests/cli.py) inherit it.
_CAPABILITY = os.environ.get("ATEN_CPU_CAPABILITY") or "default"
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{_CAPABILITY}_{THREADS}t"),
)

import pytest  # noqa: E402
import torch  # noqa: E402

from rf.models.causal_wan import CausalWanTransformer3DModel  # noqa: E402

torch.set_num_threads(THREADS)


def tiny_wan_config(**overrides) -> dict:
    cfg = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=8,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        eps=1e-6,
        rope_max_seq_len=256,
    )
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_wan() -> CausalWanTransformer3DModel:
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config())
    # diffusers zero-inits nothing here, but make every output depend on every input at a visible scale
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1 and torch.all(p == 0):
                p.normal_(0, 0.1)
    return model.eval()


@pytest.fixture
def one_thread():
    """Tiny tensors on a busy 2-core machine: 2 threads make some kernels (F.unfold in the flow's 3x3 median)
    ~60x slower than 1. Modules that score or generate tiny videos use it (pytestmark)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
