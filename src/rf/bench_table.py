"""The table python -m rf.bench prints after its JSON: a row per variant and policy (the JSON holds every number)."""

from __future__ import annotations


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(results: dict) -> str:
    card = results.get("card", {})
    limit = f", power limit {card['power_limit_w']:.0f} W" if "power_limit_w" in card else ""
    rows = [f"device: {results['device']} ({card.get('uuid', 'no uuid')}{limit})  "
            f"matmul: {results['matmul_tflops'] or float('nan'):.0f} TFLOP/s",
            "| variant | policy | window / sink | clip FPS | x plain | first frame / chunk (s) | stream FPS | "
            "steady FPS / DiT only | video s | p50 start | p50 last | "
            "DiT / VAE (s) | peak GiB | SM MHz in the stream (power-capped) | check: latents / frames vs fp32 | stop |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, v in results["variants"].items():
        c = v.get("check")
        verdict = (
            "-"
            if c is None
            else (
                f"{c['max_latents_rel_error']:.1e} / {c['max_frames_rel_error_vs_fp32']:.1e}"
                + {True: " ok", False: " FAIL", None: ""}[c["passed"]]
            )
        )
        if "error" in v:
            rows.append(f"| {name} | - | failed: {v['error'][:80]} |")
        label = name + "".join(f" ({len(x)} steps)" if k == "denoising_steps" else f" ({k}={x})"
                               for k, x in v.get("sampler", {}).items())  # fmt: skip
        eager = " recompile limit hit: part eager" if v.get("recompile_limit_hits") else ""
        for policy, r in v.get("policies", {}).items():
            compiled = r.get("graphs_compiled_while_timed")
            compiled = f" {compiled} graphs compiled while timed" if compiled else ""
            lat = list(r["latency"].values())
            p50 = [f"{x['p50_s']:.3f}" for x in (lat[0], lat[-1])] if lat else ["-", "-"]
            peak = r["stream_peak_memory_gib"]
            peak = "-" if peak is None else f"{peak:.1f}"
            speedup = f"{r['clip_speedup']:.2f}" if "clip_speedup" in r else "-"
            clock = r.get("card", {})
            clock = (
                f"{clock['sm_mhz_mean']:.0f} ({clock['power_capped_fraction']:.0%})" if clock.get("samples") else "-"
            )
            rows.append(
                f"| {label} | {policy} | {r['attention_frames']} / {r['sink_frames']} | "
                f"{r['clip_fps']:.1f} | {speedup} | "
                f"{r['clip_first_frame_s']:.3f} / {r['clip_first_frames_s']:.3f} | {r['stream_fps']:.1f} | "
                f"{r['steady_fps']:.1f} / {fmt(r['steady_dit_only_fps'])} | "
                f"{r['stream_seconds_of_video']:.0f} | {p50[0]} | {p50[1]} | "
                f"{r['steady_chunk_dit_s']:.3f} / {r['steady_chunk_decode_s']:.3f} | {peak} | {clock} | {verdict} | "
                f"{r['stream_stopped'] or ''}{eager}{compiled} |"
            )
    return "\n".join(rows)
