"""make bench's CPU smoke mode: the toy student through the same code, every policy, a complete JSON."""

import json

from tests.cli import run_rf

SMALL = ["model=toy", "clip_seconds=2", "stream_seconds=6", "minutes=[0.05]", "window_seconds=1", "repeats=2",
         "warmup_chunks=1"]  # fmt: skip


def test_bench_writes_every_policy_and_the_method(tmp_path):
    out = tmp_path / "bench.json"
    # full_max_seconds: the full policy's wall-clock stop (its own test below) must not cut this 6-s stream on a
    # slow or loaded machine, where it came within seconds of the default 60
    r = run_rf("bench", *SMALL, "full_max_seconds=900", f"out={out}", runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert {"method", "device", "versions", "settings", "variants"} <= result.keys()
    assert result["settings"]["model"]["name"] == "toy"
    variants = result["variants"]
    # the GPU variants are skipped on a CPU, and say why
    assert "graphs" in variants["exact"]["skipped"] and "overlap" in variants["approximate"]["skipped"]
    policies = variants["plain"]["policies"]
    # the variant's wall time holds at least its timed streams (the toy's video: 8 fps)
    streamed_s = sum(p["stream_seconds_of_video"] * 8 / p["stream_fps"] for p in policies.values())
    assert variants["plain"]["wall_s"] >= streamed_s
    assert f"variant plain: {variants['plain']['wall_s']:.0f} s" in r.stdout
    assert list(policies) == ["full", "window", "sink", "ema_sink"]
    for policy in policies.values():
        assert policy["clip_fps"] > 0 and policy["stream_fps"] > 0
        assert 0 < policy["clip_first_frame_s"] <= policy["clip_first_frames_s"]
        assert len(policy["clip_runs"]) == 2
        assert all(c["frames"] == 18 for c in policy["clip_runs"])  # 2 s at 8 fps: 6 chunks
        assert policy["stream_seconds_of_video"] == 6.0 and len(policy["stream_latency_s"]) == 16
        assert set(policy["latency"]) == {"start", "0.05min"}
        assert policy["latency"]["start"]["p99_s"] >= policy["latency"]["start"]["p50_s"] > 0
        assert policy["dit_tflop_per_steady_chunk"] > 0
        # end to end beside the DiT alone, warm: the DiT alone is faster (the decode is left out)
        assert policy["steady_dit_only_fps"] > policy["steady_fps"] > 0
        assert policy["video_frames_per_steady_chunk"] == 3 and policy["chunk_frames"] == 3
        assert policy["clip_speedup"] > 0
        assert policy["graphs_compiled_while_timed"] == 0  # the plain path compiles nothing
    assert policies["full"]["clip_speedup"] == 1.0  # the baseline
    assert [(policies[p]["attention_frames"], policies[p]["sink_frames"]) for p in ("window", "sink", "ema_sink")] == [
        (9, 0),
        (9, 3),
        (9, 3),
    ]  # conf/sink: 9 latent frames attended, 3 of them the sink where the policy has one
    spans = {p: policies[p]["dit_tflop_per_steady_chunk"] for p in ("full", "window")}
    assert spans["full"] > spans["window"]  # attention over more keys costs more
    assert "| plain | ema_sink |" in r.stdout


def test_cpu_variants_check_themselves_against_the_plain_path(tmp_path):
    """The static cache and the fused cache pass are exact (the same latents and frames); reusing the last pass's
    K/V is not, and is reported."""
    out = tmp_path / "bench.json"
    r = run_rf("bench", *SMALL, "variants=cpu", "check_chunks=4", "full_max_seconds=900", f"out={out}", runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    variants = json.loads(out.read_text())["variants"]
    static, reuse = variants["static_cache"]["check"], variants["reuse_cache_pass"]["check"]
    assert static["passed"] is True and static["max_latents_rel_error"] < 1e-5 and len(static["latents_rel_error"]) == 4
    assert reuse["passed"] is None and reuse["max_latents_rel_error"] > 1e-4  # an approximation: measured, not judged
    assert (
        variants["reuse_cache_pass"]["policies"]["ema_sink"]["dit_tflop_per_steady_chunk"]
        < (variants["static_cache"]["policies"]["ema_sink"]["dit_tflop_per_steady_chunk"])
    )  # one pass fewer per chunk
    fused = variants["fused_cache_pass"]["check"]  # fp32: exact up to summation order (tests/unit/test_fused_*)
    assert fused["passed"] is True and fused["max_latents_rel_error"] < 1e-5 and len(fused["latents_rel_error"]) == 4
    fused, static = (variants[v]["policies"]["ema_sink"] for v in ("fused_cache_pass", "static_cache"))
    assert fused["dit_passes_per_steady_chunk"] == static["dit_passes_per_steady_chunk"] - 1 == 4
    assert fused["dit_tflop_per_steady_chunk"] == static["dit_tflop_per_steady_chunk"]  # the same work, one pass fewer


def test_a_variant_that_lacks_an_earlier_variants_model_switch_gets_a_fresh_model(tmp_path):
    """fast.fuse_qkv stays in the shared model; a variant after it without the switch is measured on a model built
    again with the same weights (its check against plain passes) and the JSON says why (rf.fast.in_place)."""
    out = tmp_path / "bench.json"
    r = run_rf("bench", *SMALL, "variants=cpu", "~variants.reuse_cache_pass", "~variants.fused_cache_pass",
               "+variants.fused_qkv={fast: {static_cache: true, fuse_qkv: true}, policies: [ema_sink]}",
               "+variants.after={fast: {static_cache: true}, policies: [ema_sink]}", "check_chunks=4",
               "variants.plain.policies=[ema_sink]", f"out={out}", runs=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    variants = json.loads(out.read_text())["variants"]
    assert list(variants) == ["plain", "static_cache", "fused_qkv", "after"]
    assert "fresh_model" not in variants["fused_qkv"] and variants["after"]["fresh_model"] == "without fuse_qkv=true"
    assert "variant after: a fresh model and VAE (the shared ones hold fuse_qkv=true)" in r.stdout
    for name in ("fused_qkv", "after"):
        check = variants[name]["check"]
        assert check["passed"] is True and check["max_latents_rel_error"] < 1e-5, (name, check)


def test_full_policy_stops_at_its_wall_clock_limit(tmp_path):
    out = tmp_path / "bench.json"
    overrides = [
        "variants=cpu",
        "variants.plain.policies=[full]",
        "~variants.static_cache",
        "~variants.reuse_cache_pass",
        "~variants.fused_cache_pass",
        "full_max_seconds=0",
        "model.dtype=bf16",
        f"out={out}",
    ]
    r = run_rf("bench", *SMALL, *overrides, runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    full = json.loads(out.read_text())["variants"]["plain"]["policies"]["full"]
    assert full["stream_stopped"].startswith("wall-clock limit") and len(full["stream_latency_s"]) == 1


def test_full_size_on_the_cpu_is_refused_with_the_smoke_command(tmp_path):
    r = run_rf("bench", "device=cpu", f"out={tmp_path / 'b.json'}", runs=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: model=wan_1_3b on the CPU would take hours: the full-size bench needs a GPU; "
        "`make bench ARGS='model=toy'` runs the CPU smoke mode"
    ]
    assert not (tmp_path / "b.json").exists()


def test_the_table_says_dit_only_is_not_separable_when_the_decode_overlaps():
    """An overlapped variant's DiT time holds the wait for the previous chunk's decode: its record says None and the
    table prints '-', where the same switches without overlap give a rate."""
    from rf.bench_table import table

    record = {"attention_frames": 9, "sink_frames": 3, "clip_fps": 30.3, "clip_first_frame_s": 0.165,
              "clip_first_frames_s": 0.275, "stream_fps": 29.5, "steady_fps": 28.8, "steady_dit_only_fps": None,
              "stream_seconds_of_video": 10, "latency": {}, "stream_peak_memory_gib": 11.9,
              "steady_chunk_dit_s": 0.416, "steady_chunk_decode_s": 0.0, "stream_stopped": None}  # fmt: skip
    results = {"device": "H100", "matmul_tflops": 779.0, "variants": {"exact": {"policies": {"ema_sink": record}}}}
    assert "| 28.8 / - |" in table(results)
    assert "| 28.8 / 42.7 |" in table({**results, "variants": {"e": {"policies": {"ema_sink": {
        **record, "steady_dit_only_fps": 42.7}}}}})  # fmt: skip


def test_a_variant_whose_kernel_is_not_installed_fails_alone(tmp_path, monkeypatch, capsys):
    """A GPU without fa3-fwd running variants=ladder: the FlashAttention-3 variant is recorded as failed, with how
    to install it, and the variants after it are still measured; the run then ends in an error naming it."""
    import pytest
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import rf.bench
    import rf.fast.fa3
    from rf.fast.fast_path import FastPath
    from rf.utils.cli import CONF_DIR

    def missing():
        raise ImportError(f"fast.attention=fa3 needs FlashAttention-3: {rf.fast.fa3.INSTALL}")

    monkeypatch.setattr(rf.fast.fa3, "load", missing)  # not installed, whatever this machine has
    monkeypatch.setattr(FastPath, "gpu_only", lambda self: [])  # let the CPU try it, as a GPU would
    out = tmp_path / "bench.json"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*SMALL, "minutes=[]", "check_chunks=2", f"out={out}"])
    with open_dict(cfg):
        cfg.variants = {"plain": {"fast": {}, "policies": ["ema_sink"]},
                        "fa3": {"fast": {"attention": "fa3"}, "policies": ["ema_sink"]},
                        "static": {"fast": {"static_cache": True}, "policies": ["ema_sink"]}}  # fmt: skip
    with pytest.raises(RuntimeError, match="variants fa3 failed"):
        rf.bench.main.__wrapped__(cfg)
    result = json.loads(out.read_text())["variants"]
    assert "pip install fa3-fwd" in result["fa3"]["error"] and result["fa3"]["wall_s"] >= 0
    assert result["static"]["policies"]["ema_sink"]["stream_fps"] > 0  # measured after the failure
    assert result["static"]["check"]["passed"] is True
    assert "variant fa3 failed: ImportError" in capsys.readouterr().out


def test_a_variant_with_fewer_steps_is_measured_as_an_approximation(tmp_path, capsys):
    """variants.NAME.sampler overrides the schedule for that variant alone: 3 denoising passes instead of 4 cost
    fewer FLOPs, and the variant's check reports its deviation from plain's 4-step latents without passing it. A
    key the sampler does not have is refused before any variant runs, naming it."""
    import pytest
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import rf.bench
    from rf.utils.cli import CONF_DIR

    out = tmp_path / "bench.json"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*SMALL, "minutes=[]", "check_chunks=2", f"out={out}"])
    with open_dict(cfg):
        cfg.variants = {"plain": {"fast": {}, "policies": ["ema_sink"]},
                        "three": {"fast": {"static_cache": True}, "policies": ["ema_sink"],
                                  "sampler": {"denoising_steps": [1000, 667, 333]}}}  # fmt: skip
    rf.bench.main.__wrapped__(cfg)
    result = json.loads(out.read_text())["variants"]
    plain, three = (result[v]["policies"]["ema_sink"] for v in ("plain", "three"))
    assert (plain["dit_passes_per_steady_chunk"], three["dit_passes_per_steady_chunk"]) == (5, 4)
    # FLOPs scale with the chunk-sized passes: 4 of 5
    assert three["dit_tflop_per_steady_chunk"] == pytest.approx(plain["dit_tflop_per_steady_chunk"] * 4 / 5, rel=1e-9)
    assert result["three"]["approximate"] is True
    assert result["three"]["sampler"] == {"denoising_steps": [1000, 667, 333]}
    assert "| three (3 steps) | ema_sink |" in capsys.readouterr().out  # the table says so too
    check = result["three"]["check"]
    assert check["passed"] is None and check["tolerance"] is None
    assert check["max_latents_rel_error"] > 1e-2  # a different schedule: different latents, and the check says so
    with open_dict(cfg):
        cfg.variants.three.sampler = {"denoising_step": [1000, 500]}
    with pytest.raises(ValueError, match=r"variants.three.sampler has denoising_step.*denoising_steps"):
        rf.bench.main.__wrapped__(cfg)
