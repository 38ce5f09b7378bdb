"""Clean stops for the long commands: SIGINT (Ctrl-C) or SIGTERM (a scheduler, `kill`) ends the unit in hand.

A long loop runs under `Stop()`, which turns the first SIGINT or SIGTERM into a flag and checks nothing itself:
the loop looks at `stop.requested` between units (a chunk, a video, a shard, a batch), finishes or drops the
unit it holds, leaves every file it wrote complete (or, by name, clearly partial), and calls `stop.exit(kept)`:

    stopped by SIGTERM: kept <what is on disk>; continue with: python -m rf.<name> <the same arguments>

on stderr, one line, then exit status 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell
reports a command a signal ended. A second signal stops at once (KeyboardInterrupt or Terminated), for a unit
that hangs.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM that must stop at once: unwinds the stack as KeyboardInterrupt does for SIGINT (rf.utils.cli
    turns either into the one line)."""


def continue_command(module: str | None = None) -> str:
    """The command line that started this process, as a user would type it again."""
    module = module or _module_name()
    launcher = ["python"]
    if "TORCHELASTIC_RUN_ID" in os.environ:  # one of torchrun's processes: the user typed torchrun, once per node
        launcher = ["torchrun", f"--nproc-per-node={os.environ.get('LOCAL_WORLD_SIZE', '1')}"]
        if int(os.environ.get("GROUP_WORLD_SIZE", "1")) > 1:
            launcher.append(f"--nnodes={os.environ['GROUP_WORLD_SIZE']}")
    return shlex.join([*launcher, "-m", module, *sys.argv[1:]])


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name else "rf"


class Stop:
    """A context in which SIGINT and SIGTERM ask the loop to stop; `signal` is the first one received (or None)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Stop:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:  # the second signal: stop now, whatever is in hand
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated
        self.signal = signal.Signals(signum)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def exit(self, kept: str, then: str = "continue with") -> NoReturn:
        """Print the one line (what was kept, the command that continues) and exit with 128 + the signal."""
        print(f"stopped by {self.signal.name}: {kept}; {then}: {continue_command()}", file=sys.stderr, flush=True)
        sys.exit(128 + int(self.signal))
