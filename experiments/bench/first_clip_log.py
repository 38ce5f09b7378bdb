"""Where the first compiled variant's first clip spent its 20-50 s: rf.bench with every CUDA-graph capture, every
pass slower than 0.5 s, and stack dumps of the clips (every 8 s) logged to stderr. With TORCH_LOGS=recompiles it
showed the decoder recompiling in the first timed clip (experiments/bench/README.md, results/stall_first_clip.log):

    TORCH_LOGS=recompiles python experiments/bench/first_clip_log.py <rf.bench overrides>

The stack dumps (faulthandler) crashed the process with a segmentation fault once the first had been written, on an
H100 with torch 2.11; what it had logged by then was enough. rf.bench now warms up with a second stream, and its
JSON counts the graphs compiled while timing (graphs_compiled_while_timed)."""

import faulthandler
import runpy
import sys
import time

import rf.fast.graphs as graphs
import rf.fast.timing as timing

T0 = time.perf_counter()


def log(msg):
    print(f"[stall {time.perf_counter() - T0:7.1f}] {msg}", file=sys.stderr, flush=True)


orig_run = timing.Stream.run


def run(self, chunks, wall_limit=float("inf"), desc="", keep=0):
    t0 = time.perf_counter()
    log(f"start {desc} ({chunks} chunks)")
    if "clip" in desc:
        faulthandler.dump_traceback_later(8, repeat=True, file=sys.stderr)
    try:
        return orig_run(self, chunks, wall_limit, desc, keep)
    finally:
        faulthandler.cancel_dump_traceback_later()
        log(f"end {desc}: {time.perf_counter() - t0:.1f} s")


timing.Stream.run = run
orig_capture = graphs.CudaGraphModel._capture


def capture(self, x, t, text, write_cache, *args):
    t0 = time.perf_counter()
    out = orig_capture(self, x, t, text, write_cache, *args)
    log(f"captured stage={self.cache.stage} write={write_cache} x={tuple(x.shape)} in {time.perf_counter() - t0:.2f} s")
    return out


graphs.CudaGraphModel._capture = capture
orig_call = graphs.CudaGraphModel.__call__


def call(self, x, t, *, text, cache, write_cache=False, **kwargs):
    t0, stage = time.perf_counter(), cache.stage
    out = orig_call(self, x, t, text=text, cache=cache, write_cache=write_cache, **kwargs)
    if time.perf_counter() - t0 > 0.5:
        log(f"slow pass stage={stage} write={write_cache} x={tuple(x.shape)}: {time.perf_counter() - t0:.2f} s")
    return out


graphs.CudaGraphModel.__call__ = call
sys.argv = ["rf.bench", *sys.argv[1:]]
runpy.run_module("rf.bench", run_name="__main__", alter_sys=True)
