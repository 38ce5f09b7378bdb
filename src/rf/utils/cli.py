"""Hydra entry points with one-line errors.

Every `python -m rf.<name>` wraps its main in `entry(config_name)`: configuration comes from conf/.
What a user can get wrong ends the process with one line on stderr, `error: ...`, naming the value
and the fix, and exit status 2; `traceback=true` (or HYDRA_FULL_ERROR=1) shows the traceback instead:

    a bad value          a ValueError or a missing file raised by rf, also from a constructor Hydra called
    a bad command line   an unknown option or config name, an override Hydra cannot parse
    an unwritable output the folder of `out=` (or of the entry's other outputs) takes no new file: checked
                         before any work; Hydra's run folder (rf.train) cannot be created
    a full disk          ENOSPC / EDQUOT while writing
    a broken config      a YAML file (conf/ or --config-dir) that does not parse: file, line and column

A stop (SIGINT, SIGTERM) is one line too, `stopped by SIG...: what was kept; continue with: COMMAND`, and exit
status 130 or 143: the long loops stop between units (rf.utils.stop), anywhere else this wrapper ends the run.

Warnings print as one line each too, `warning: ...` (`traceback=true`: Python's usual two lines).
(`debug=NAME` is another thing: a preset of conf/debug/ for rf.train, e.g. debug=fdr.)
"""

from __future__ import annotations

import errno
import functools
import os
import re
import signal
import sys
import tempfile
import warnings
from pathlib import Path

import hydra
import yaml
from hydra.errors import HydraException, InstantiationException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from rf.utils.stop import Terminated, continue_command

CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, FloatingPointError)
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_DEBUG_ARG = re.compile(r"\+{0,2}traceback=(true|True|1|yes)")
_OLD_DEBUG_ARG = re.compile(r"\+{0,2}debug=(true|True|false|False|1|0|yes|no)")  # the switch before conf/debug/


def one_line(text: object) -> str:
    """A multi-line message on one line; indented lines (Hydra's lists of options) become a comma list."""
    text = re.sub(r"\n[ \t]+", ", ", str(text).strip())
    return re.sub(r"\s*\n\s*", " ", text.replace(":, ", ": "))


def user_error(err: BaseException) -> BaseException | None:
    """The user's mistake behind `err` (Hydra wraps what a constructor raised), or None for a bug."""
    cause = err.__cause__ if isinstance(err, InstantiationException) else err
    if isinstance(cause, USER_ERRORS) or (isinstance(cause, OSError) and cause.errno in FULL_DISK):
        return cause
    return None


def check_writable(key: str, value: str | Path) -> None:
    """Refuse, before any work, an output whose nearest existing folder takes no new file."""
    path = Path(value)
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{key}={value}: {folder} is a file, not a folder: choose another {key}=")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(
            f"{key}={value}: cannot write in {folder} ({err.strerror}): choose a writable {key}="
        ) from err


def _terminate(signum, frame) -> None:
    """SIGTERM outside a loop that stops cleanly (rf.utils.stop): unwind, as SIGINT's KeyboardInterrupt does."""
    raise Terminated


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    tqdm.write(f"warning: {one_line(message)}", file=sys.stderr)  # on a line of its own, under a progress bar


def _before_run(err: Exception) -> str | None:
    """One line for what failed before the entry point ran: composing the config, creating Hydra's run folder."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:  # a config file that is not YAML
        mark = err.problem_mark
        return (
            f"{mark.name} is not valid YAML: {err.problem} at line {mark.line + 1}, column {mark.column + 1} "
            f"({err.context or 'while reading it'}): fix that line"
        )
    if isinstance(err, yaml.YAMLError):
        return f"a config file is not valid YAML ({one_line(err)}): fix it"
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {one_line(err.message)}"
    if isinstance(err, HydraException):
        message = str(err).split("Config search path:")[0]  # where Hydra looked: not the user's business
        cause = err.__cause__  # OmegaConf's reason, e.g. "Key 'max_stepz' is not in struct"
        detail = f" ({str(cause).splitlines()[0]})" if isinstance(cause, OmegaConfBaseException) and str(cause) else ""
        return one_line(message) + detail
    if err.filename is not None:
        return f"cannot write {err.filename} ({err.strerror}): set paths.runs (or RF_RUNS) to a writable folder"
    return None


def entry(config_name: str, outputs: tuple[str, ...] = ("out",)):
    """`outputs`: config keys naming a file or folder the entry point writes, checked first when set."""

    def wrap(fn):
        started = False

        @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
        @functools.wraps(fn)
        def run(cfg: DictConfig):
            nonlocal started
            started = True
            debug = cfg.get("traceback", False)
            if not debug:
                warnings.showwarning = _one_line_warning
            previous = signal.signal(signal.SIGTERM, _terminate)
            try:
                for key in outputs:
                    if OmegaConf.select(cfg, key) is not None:
                        check_writable(key, OmegaConf.select(cfg, key))
                return fn(cfg)
            except (KeyboardInterrupt, Terminated):  # a signal outside the loops that stop cleanly
                if debug:
                    raise
                sig = signal.SIGTERM if sys.exc_info()[0] is Terminated else signal.SIGINT
                kept = "what was written is whole or named partial (.partial.mp4, .tmp)"
                print(f"stopped by {sig.name}: {kept}; continue with: {continue_command()}", file=sys.stderr)
                sys.exit(128 + int(sig))
            except Exception as err:
                cause = user_error(err)
                if debug or cause is None:
                    raise
                print(f"error: {one_line(cause)}", file=sys.stderr)
                sys.exit(2)
            finally:
                signal.signal(signal.SIGTERM, previous)

        @functools.wraps(fn)
        def main():
            # Hydra prints its own errors over several lines and exits 1; HYDRA_FULL_ERROR makes it raise them
            # here instead, where they become one line (composition fails before `run` is called).
            old = next((a for a in sys.argv[1:] if _OLD_DEBUG_ARG.fullmatch(a)), None)
            if old is not None:  # Hydra would stop with a traceback: `debug` is the config group conf/debug/
                value = old.split("=", 1)[1]
                print(f"error: {old}: tracebacks are switched with traceback={value}; debug=NAME picks a preset of "
                      "conf/debug/ (rf.train: debug=fdr, debug=limit)", file=sys.stderr)  # fmt: skip
                sys.exit(2)
            debug = any(_DEBUG_ARG.fullmatch(a) for a in sys.argv[1:]) or os.environ.get("HYDRA_FULL_ERROR") == "1"
            previous = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"
            try:
                return run()
            except (HydraException, OSError, yaml.YAMLError) as err:
                message = None if debug or started else _before_run(err)
                if message is None:
                    raise
                print(f"error: {message}", file=sys.stderr)
                sys.exit(2)
            finally:
                if previous is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = previous

        return main

    return wrap
