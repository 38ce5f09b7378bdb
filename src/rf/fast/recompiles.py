"""Catch torch.compile running code eagerly because it hit its recompile limit, and count what it compiles.

When a compiled function has been recompiled `torch._dynamo.config.recompile_limit` times (a new shape, a new
switch, each a guard that failed), Dynamo logs one warning and runs that function eagerly from then on, silently
slower. The bench shares one model and one VAE among its variants, so each variant's switches add recompilations:
a variant late in a call can fall back to eager this way and report a slower number that is not its own. This
watch collects those warnings so that the bench can say which variant they hit.

    with RecompileLimitWatch() as watch:
        ...
    watch.hits   # ["'forward' (.../autoencoder_kl_wan.py:766)", ...]

`graphs_compiled()` counts the graphs Dynamo has compiled in this process: the bench reads it around its timed
runs, where a warm path compiles nothing (a compilation there is seconds inside a measured chunk).
"""

from __future__ import annotations

import logging
import re

import torch._dynamo.utils

LOGGER = "torch._dynamo.convert_frame"  # where Dynamo logs "torch._dynamo hit config.recompile_limit"
FUNCTION = re.compile(r"function: (.+)")


class RecompileLimitWatch(logging.Handler):
    """A logging handler on Dynamo's frame converter, attached inside `with`: .hits lists the functions that hit
    the recompile limit (each once, in order)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "hit config.recompile_limit" in message or "hit config.accumulated_recompile_limit" in message:
            match = FUNCTION.search(message)
            function = match.group(1).strip() if match else message.splitlines()[0]
            if function not in self.hits:
                self.hits.append(function)

    def __enter__(self) -> RecompileLimitWatch:
        logging.getLogger(LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger(LOGGER).removeHandler(self)


def graphs_compiled() -> int:
    """How many graphs torch.compile has compiled in this process so far (each recompilation is one more)."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]
