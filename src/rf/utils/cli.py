"""Hydra entry points with one-line errors.

Every `python -m rf.<name>` wraps its main in `entry(config_name)`: configuration comes from
conf/, and a bad value (a ValueError or a missing file raised by rf with a message naming the
value and the fix) ends the process with that one line and exit status 2. `debug=true` shows
the traceback instead.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, FloatingPointError)


def entry(config_name: str):
    def wrap(fn):
        @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
        @functools.wraps(fn)
        def main(cfg: DictConfig):
            try:
                return fn(cfg)
            except (*USER_ERRORS, InstantiationException) as err:
                # Hydra wraps what a constructor raised; a bad value is still a bad value
                cause = err.__cause__ if isinstance(err, InstantiationException) else err
                if cfg.get("debug", False) or not isinstance(cause, USER_ERRORS):
                    raise
                print(f"error: {cause}", file=sys.stderr)
                sys.exit(2)

        return main

    return wrap
