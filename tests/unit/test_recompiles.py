"""rf.fast.recompiles: the bench learns which variant ran part of its code eagerly after the recompile limit, and
whether anything compiled while it timed."""

import torch

from rf.fast.recompiles import RecompileLimitWatch, graphs_compiled


def scaled(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


def test_the_watch_names_the_function_that_hit_the_recompile_limit():
    torch._dynamo.reset()
    compiled = torch.compile(scaled, dynamic=False, backend="eager")  # one graph per shape
    with torch._dynamo.config.patch(recompile_limit=2), RecompileLimitWatch() as watch:
        for n in (2, 3):  # two graphs: within the limit
            compiled(torch.ones(n))
        assert watch.hits == []
        for n in (4, 5):  # a third shape: the limit is hit, and from then on `scaled` runs eagerly
            torch.testing.assert_close(compiled(torch.ones(n)), torch.full((n,), 3.0))
    assert len(watch.hits) == 1 and "'scaled'" in watch.hits[0] and "test_recompiles.py" in watch.hits[0]
    torch._dynamo.reset()


def test_the_watch_hears_nothing_outside_its_block():
    torch._dynamo.reset()
    compiled = torch.compile(scaled, dynamic=False, backend="eager")
    watch = RecompileLimitWatch()
    with watch:
        compiled(torch.ones(2))
    with torch._dynamo.config.patch(recompile_limit=1):
        for n in (3, 4):
            compiled(torch.ones(n))
    assert watch.hits == []
    torch._dynamo.reset()


def test_graphs_compiled_counts_every_compilation_and_nothing_warm():
    torch._dynamo.reset()
    compiled = torch.compile(scaled, dynamic=False, backend="eager")
    before = graphs_compiled()
    compiled(torch.ones(2))
    assert graphs_compiled() == before + 1
    compiled(torch.ones(2))  # warm: nothing compiles
    assert graphs_compiled() == before + 1
    compiled(torch.ones(3))  # a new shape: a recompilation
    assert graphs_compiled() == before + 2
    torch._dynamo.reset()
