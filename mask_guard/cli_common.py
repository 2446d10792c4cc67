"""What every ``mask-guard`` command shares: exit codes, the error type, config lookup, output.

Both cli.py (run, check-config, detect, the parser) and admin.py (status, snapshot, stats) import this
module and nothing of each other, so the command line has no import circle.

Exit codes: 0 ok; 1 error (some images unreadable, snapshot failed); 2 usage; 3 the service is not
running (status); 4 permission denied on the control socket; 66 a model file missing or corrupt;
78 invalid configuration (sysexits EX_NOINPUT / EX_CONFIG: the unit does not restart on those).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .config import Config, ConfigError, load_config

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_NOPERM = 0, 1, 2, 3, 4
EXIT_MODEL, EXIT_CONFIG = 66, 78
SYSTEM_CONFIG = Path("/etc/mask-guard/config.yaml")


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


def default_config_path() -> Optional[Path]:
    """``$MASK_GUARD_CONFIG``, else /etc/mask-guard/config.yaml when present, else built-in defaults."""
    env = os.environ.get("MASK_GUARD_CONFIG")
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def load(path: Optional[str]) -> Config:
    p = Path(path) if path else default_config_path()
    try:
        return load_config(p)
    except ConfigError as exc:
        raise CliError(f"invalid configuration {p}:\n  " + "\n  ".join(exc.errors), EXIT_CONFIG) from exc


def out(line: str) -> None:
    print(line, flush=True)


def model_error(exc: Exception) -> CliError:
    return CliError(str(exc), EXIT_MODEL)
