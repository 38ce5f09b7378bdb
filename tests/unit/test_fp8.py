"""Fp8Linear and fp8_linears on CPU: the reference path, its error against the exact Linear, the swap."""

import pytest
import torch
from torch import nn

from rf.fast.fp8 import (
    CALIBRATION_MARGIN,
    FP8_MAX,
    Fp8Linear,
    calibration,
    fp8_linears,
    fp8_mm,
    fp8_mm_reference,
    quantize_rowwise,
    quantize_tensorwise,
)
from rf.models.causal_wan import CausalWanTransformer3DModel
from tests.conftest import tiny_wan_config


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def linear(in_features=64, out_features=48, bias=True, dtype=torch.float32) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(in_features, out_features, bias=bias).to(dtype)
    if bias:
        with torch.no_grad():
            layer.bias.normal_(0, 0.1)
    return layer


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_fp8_linear_is_close_to_the_linear_but_quantised(dtype, bias):
    ref_layer = linear(bias=bias, dtype=dtype)
    layer = Fp8Linear.from_linear(ref_layer)
    x = torch.randn(2, 7, 64, dtype=dtype)  # leading dims [B, L]
    with torch.no_grad():
        out, ref = layer(x), ref_layer(x)
    assert out.shape == (2, 7, 48) and out.dtype == dtype
    assert 1e-4 < relative_error(out, ref) < 0.06  # e4m3 rowwise: about 3.5e-2 here
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight_scale.shape == (48, 1)
    assert (layer.in_features, layer.out_features) == (64, 48)
    assert (layer.bias is None) == (not bias) and (not bias or layer.bias.dtype == dtype)


def test_reference_path_is_the_manual_quantise_dequantise():
    ref_layer = linear()
    x = torch.randn(5, 3, 64)
    # Per-row amax scaling of the weight [48, 64] and of each token of x [15, 64], then a float matmul
    w, x2 = ref_layer.weight.detach(), x.reshape(-1, 64)
    w_scale = w.abs().amax(dim=1, keepdim=True) / 448
    x_scale = x2.abs().amax(dim=1, keepdim=True) / 448
    w_dq = (w / w_scale).to(torch.float8_e4m3fn).float() * w_scale
    x_dq = (x2 / x_scale).to(torch.float8_e4m3fn).float() * x_scale
    manual = (x_dq @ w_dq.t() + ref_layer.bias.detach()).reshape(5, 3, 48)
    with torch.no_grad():
        out = Fp8Linear.from_linear(ref_layer)(x)
    torch.testing.assert_close(out, manual, rtol=1e-6, atol=1e-6)


def test_quantize_rowwise_maps_each_row_amax_to_448_and_survives_zero_rows():
    x = torch.randn(4, 32)
    x[2] = 0
    x_fp8, scale = quantize_rowwise(x)
    assert x_fp8.dtype == torch.float8_e4m3fn and scale.shape == (4, 1) and scale.dtype == torch.float32
    assert torch.equal(x_fp8.float().abs().amax(dim=1), torch.tensor([448.0, 448.0, 0.0, 448.0]))
    assert torch.isfinite(x_fp8.float()).all()


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_scaled_mm_call_computes_the_reference_function(out_dtype):
    """torch._scaled_mm runs on CPU in this torch: it checks fp8_mm's operand layout and scales."""
    layer = Fp8Linear.from_linear(linear())
    x_fp8, x_scale = quantize_rowwise(torch.randn(10, 64))
    args = (x_fp8, x_scale, layer.weight, layer.weight_scale, layer.bias, out_dtype)
    out, ref = fp8_mm(*args).float(), fp8_mm_reference(*args).float()  # [10, 48]
    # Both are float32 sums of the same K = 64 products a_k b_k (a = x_fp8 * x_scale, b = w_fp8 * w_scale) in
    # an order that depends on the CPU, the BLAS kernel and the thread count. Each float32 sum is within
    # gamma_K = K eps / (1 - K eps) of sum_k |a_k b_k| (Higham, Accuracy and Stability, 3.1), so the two are
    # within 2 gamma_K of it; where the scales are applied (after the sum or to each operand) adds 2 roundings
    # per product and the bias addition one rounding of |y| each: together under (2 K + 8) eps sum_k |a_k b_k|
    # + 2 eps |y|. A bf16 output (unit roundoff u = 2^-8) is rounded once by the reference, u |y|, and up to three
    # times by _scaled_mm, which adds the bias in bf16: the product, the bias and the sum, u (|a b| + |bias| + |y|).
    a, b = x_fp8.float() * x_scale, layer.weight.float() * layer.weight_scale  # [10, 64], [48, 64]
    eps = torch.finfo(torch.float32).eps
    magnitude = a.abs() @ b.abs().t()  # [10, 48] sum_k |a_k b_k|
    bound = (2 * 64 + 8) * eps * magnitude + 2 * eps * ref.abs()
    if out_dtype == torch.bfloat16:
        u, product = 2.0**-8, a @ b.t()  # [10, 48] without the bias
        bound = bound + u * (product.abs() + layer.bias.abs() + 2 * ref.abs())
    assert torch.all((out - ref).abs() <= bound), ((out - ref).abs() / bound).max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_linears_swaps_the_block_linears_and_stays_close(tiny_wan, dtype):
    model = tiny_wan.to(dtype)
    hidden = torch.randn(1, 4, 3, 4, 4, dtype=dtype)
    text = torch.randn(1, 6, model.config.text_dim, dtype=dtype)
    t = torch.full((1,), 500.0)
    with torch.no_grad():
        ref = model(hidden, t, text).sample
        swapped = fp8_linears(model)
        out = model(hidden, t, text).sample

    assert swapped == 10 * len(model.blocks)  # attn1, attn2: to_q, to_k, to_v, to_out.0; ffn: net.0.proj, net.2
    fp8 = [name for name, m in model.named_modules() if isinstance(m, Fp8Linear)]
    assert len(fp8) == swapped and all(name.startswith("blocks.") for name in fp8)
    assert not any(isinstance(m, nn.Linear) for m in model.blocks.modules())
    assert isinstance(model.proj_out, nn.Linear) and model.proj_out.weight.dtype == dtype
    assert 0 < relative_error(out, ref) < 0.1


def test_fp8_linears_include_selects_block_parts(tiny_wan):
    assert fp8_linears(tiny_wan, include=("ffn",)) == 2 * len(tiny_wan.blocks)
    assert isinstance(tiny_wan.blocks[0].attn1.to_q, nn.Linear)
    with pytest.raises(ValueError, match="unknown block parts"):
        fp8_linears(tiny_wan, include=("attn3",))


def test_fp8_linears_refuses_sizes_that_are_not_multiples_of_16():
    model = CausalWanTransformer3DModel(**tiny_wan_config(ffn_dim=40))
    with pytest.raises(ValueError, match="multiples of 16") as error:
        fp8_linears(model)
    message = str(error.value)
    assert "blocks.0.ffn.net.0.proj (32 -> 40)" in message and "blocks.1.ffn.net.2 (40 -> 32)" in message
    assert not any(isinstance(m, Fp8Linear) for m in model.modules())  # all or nothing


def test_quantize_tensorwise_gives_every_row_the_one_scale_of_the_whole_input():
    x = torch.randn(5, 32)
    x[2] *= 100  # one loud token: it sets the scale for all
    x_fp8, scale = quantize_tensorwise(x)
    assert scale.shape == (5, 1) and torch.all(scale == x.abs().max() / FP8_MAX)
    assert x_fp8.float().abs().max() == FP8_MAX  # the largest element maps to 448
    # e4m3 keeps 3 mantissa bits: each element within 2^-4 of itself where it stays normal (|x| / scale >= 2^-6)
    back, normal = x_fp8.float() * scale, (x / scale).abs() >= 2**-6
    assert torch.all(((back - x).abs() <= 2**-4 * x.abs())[normal])
    # the quiet tokens lose precision to the loud one, where rowwise scales keep it: the function differs
    rowwise = quantize_rowwise(x)
    quiet = [0, 1, 3, 4]
    assert relative_error(back[quiet], x[quiet]) > relative_error((rowwise[0].float() * rowwise[1])[quiet], x[quiet])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tensorwise_fp8_linear_is_close_to_the_linear(dtype):
    ref_layer = linear(dtype=dtype)
    layer = Fp8Linear.from_linear(ref_layer, scales="tensorwise")
    x = torch.randn(2, 7, 64, dtype=dtype)
    with torch.no_grad():
        out, ref = layer(x), ref_layer(x)
        rowwise = Fp8Linear.from_linear(ref_layer)(x)
    assert out.shape == (2, 7, 48) and out.dtype == dtype and "scales=tensorwise" in repr(layer)
    assert 1e-4 < relative_error(out, ref) < 0.06  # e4m3: about 3.5e-2, as rowwise on inputs of one scale
    assert relative_error(out, rowwise) > 1e-4  # another quantisation than rowwise
    with pytest.raises(ValueError, match="fp8 scales='blockwise': choose one of rowwise, tensorwise, calibrated"):
        Fp8Linear.from_linear(ref_layer, scales="blockwise")


def test_the_fast_path_passes_the_scales_on(tiny_wan):
    from rf.fast.fast_path import FastPath

    FastPath(fp8=True, fp8_scales="tensorwise").prepare_model(tiny_wan)
    assert {m.scales for m in tiny_wan.modules() if isinstance(m, Fp8Linear)} == {"tensorwise"}


def calibrated_layer(weights="rowwise") -> tuple[nn.Linear, Fp8Linear]:
    ref_layer = linear()
    return ref_layer, Fp8Linear.from_linear(ref_layer, scales="calibrated", weights=weights)


@pytest.mark.parametrize("weights", ["rowwise", "tensorwise"])
def test_a_calibrated_layer_divides_by_the_scale_it_was_calibrated_with(weights):
    ref_layer, layer = calibrated_layer(weights)
    x = torch.randn(4, 64)
    with pytest.raises(RuntimeError, match="no input scale yet: stream a few chunks under"):
        layer(x)
    with torch.no_grad(), calibration(layer):
        layer(x)
        layer(0.5 * x)  # a quieter input does not lower the amax
    assert layer.calibrated and not layer.observing
    scale = CALIBRATION_MARGIN * x.abs().max() / FP8_MAX
    torch.testing.assert_close(layer.input_scale, scale.reshape(1, 1), rtol=1e-6, atol=0)

    # the function: x / scale cast to e4m3 (no reduction), times the weight dequantised as it was quantised
    x2 = 3 * torch.randn(6, 64)  # 1.5x the calibrated range at 3 sigma: the largest elements saturate
    x_dq = (x2 / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float() * scale
    w_dq = layer.weight.float() * layer.weight_scale
    with torch.no_grad():
        out = layer(x2)
    torch.testing.assert_close(out, x_dq @ w_dq.t() + ref_layer.bias.detach(), rtol=1e-6, atol=1e-6)
    assert x_dq.abs().max() <= FP8_MAX * scale  # saturated, not inf
    with torch.no_grad():
        assert 1e-4 < relative_error(layer(x), ref_layer(x)) < 0.06  # e4m3 with one scale per input: about 4e-2
    if weights == "tensorwise":
        assert torch.all(layer.weight_scale == layer.weight_scale[0]) and "weights=tensorwise" in repr(layer)


def test_tensorwise_scales_call_the_scaled_mm_with_single_numbers():
    """torch._scaled_mm with [1, 1] scales on both sides (its tensorwise mode) computes the reference function."""
    _, layer = calibrated_layer("tensorwise")
    x = torch.randn(10, 64)
    x_scale = (x.abs().max() / FP8_MAX).reshape(1, 1)
    x_fp8 = (x / x_scale).to(torch.float8_e4m3fn)
    args = (x_fp8, x_scale, layer.weight, layer.weight_scale[:1], None, torch.float32)
    out, ref = fp8_mm(*args), fp8_mm_reference(*args)
    # as in test_scaled_mm_call_computes_the_reference_function, without a bias: two float32 sums of the same
    # 64 products, each within gamma_K of sum_k |a_k b_k|, and the scales applied once or twice per product
    a, b = x_fp8.float() * x_scale, layer.weight.float() * layer.weight_scale[:1]
    bound = (2 * 64 + 8) * torch.finfo(torch.float32).eps * (a.abs() @ b.abs().t())
    assert torch.all((out - ref).abs() <= bound)


def test_calibration_refuses_what_it_cannot_calibrate():
    with pytest.raises(ValueError, match="no Fp8Linear with scales=calibrated"), calibration(linear()):
        pass
    model = nn.ModuleList([calibrated_layer()[1], calibrated_layer()[1]])
    with pytest.raises(ValueError, match=r"1 FP8 layers saw no input \(or only zeros\), e.g. 1"):
        with torch.no_grad(), calibration(model):
            model[0](torch.randn(3, 64))
    assert not model[0].calibrated and not model[0].observing  # nothing fixed from a partial calibration
    with pytest.raises(KeyError), torch.no_grad(), calibration(model):  # an error inside: scales left as they were
        for layer in model:
            layer(torch.randn(3, 64))
        raise KeyError("interrupted")
    assert not any(m.calibrated or m.observing for m in model)


def test_fp8_linears_rescales_layers_swapped_before_but_refuses_to_requantise_their_weights(tiny_wan):
    n = fp8_linears(tiny_wan)
    assert fp8_linears(tiny_wan, scales="calibrated") == 0  # swaps nothing new...
    layers = [m for m in tiny_wan.modules() if isinstance(m, Fp8Linear)]
    assert len(layers) == n and {m.scales for m in layers} == {"calibrated"}  # ...and takes the new input scales
    with pytest.raises(ValueError, match="fp8 weights=tensorwise: the blocks' weights are already FP8 with "
                                         "weights=rowwise"):  # fmt: skip
        fp8_linears(tiny_wan, weights="tensorwise")


@pytest.mark.parametrize("weights", ["rowwise", "tensorwise"])
def test_the_fast_path_calibrates_from_a_stream_and_stays_close(weights):
    from rf.diffusion.sampler import GeneratorNoise, StreamSampler
    from rf.fast.fast_path import FastPath
    from rf.models.cache import CacheConfig
    from rf.stream import fp8_calibrator

    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 12, 4, 4)
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9)
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
    fast = FastPath(fp8=True, fp8_scales="calibrated", fp8_weights=weights)
    with pytest.raises(ValueError, match="fast.fp8_scales=calibrated fixes each FP8 input's scale"):
        fast.prepare_model(model)
    calibrate = fp8_calibrator(text, shape, {}, cache, fast, seed=1, chunks=2)  # another seed than the stream's
    runner = fast.prepare_model(model, calibrate)
    layers = [m for m in model.modules() if isinstance(m, Fp8Linear)]
    assert layers and all(m.calibrated and m.input_amax > 0 for m in layers)
    with torch.no_grad():
        out = StreamSampler(runner, cache).rollout([(0, text)], shape, GeneratorNoise(0))
    assert 1e-4 < relative_error(out, ref) < 0.1  # e4m3 through 2 blocks and 4 denoising passes


def test_fp8_is_not_refused_on_a_cpu_where_it_computes_the_same_function():
    """The CPU refuses the GPU-only switches (rf.stream.check_fast_path); FP8 is not one: its reference path is the
    quantised function itself, which lets the toy world measure what it costs."""
    from rf.fast.fast_path import FastPath
    from rf.stream import check_fast_path

    fast = FastPath(fp8=True, fp8_scales="calibrated", fp8_weights="tensorwise", static_cache=True)
    assert fast.gpu_only() == []
    check_fast_path(fast, torch.device("cpu"))  # no error
    with pytest.raises(ValueError, match="fast path switches graphs need a CUDA GPU"):
        check_fast_path(FastPath(fp8=True, graphs=True), torch.device("cpu"))


def test_the_streamer_calibrates_its_fp8_layers_before_the_first_prompt():
    """rf.stream.Streamer with fast.fp8_scales=calibrated (the shipped toy student, on a CPU): every FP8 layer has a
    scale from the calibration prompt's stream before any prompt is known, and the stream stays close to float32."""
    from hydra import compose, initialize_config_dir

    from rf.diffusion.sampler import GeneratorNoise
    from rf.stream import Streamer
    from rf.toy.shipped import use_shipped
    from rf.utils.cli import CONF_DIR

    fp8 = ["fast.fp8=true", "fast.fp8_scales=calibrated", "fast.fp8_weights=tensorwise", "fast.static_cache=true"]
    streams = []
    for overrides in ([], fp8):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("serve", overrides=["device=cpu", *overrides])
        streamer = Streamer.from_config(cfg, ckpt=use_shipped(cfg))
        text = streamer.text_encoder(["a red circle moving fast to the right on a striped background"])
        with torch.no_grad():
            streams.append(streamer.sampler.rollout([(0, text)], streamer.latent_shape(6), GeneratorNoise(0)))
    layers = [m for m in streamer.model.modules() if isinstance(m, Fp8Linear)]
    assert layers and all(m.calibrated and m.input_amax > 0 for m in layers)
    for m in layers:
        torch.testing.assert_close(m.input_scale, (CALIBRATION_MARGIN * m.input_amax / FP8_MAX).reshape(1, 1))
    assert 1e-4 < relative_error(streams[1], streams[0]) < 0.1  # 2 chunks through 6 FP8 blocks
