"""Settings read from the environment the template gives each function.

Read lazily and once: a route that does not need a table never asks for its
variable, and a missing one fails with one line naming it.
"""

from __future__ import annotations

import os
from functools import cache

from billing.core.errors import ConfigurationError


@cache
def require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def optional(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip() or default


def require_env(*names: str) -> None:
    """Fail a function's start (one line naming every gap) if variables are missing."""
    missing = [n for n in names if not os.environ.get(n, "").strip()]
    if missing:
        raise ConfigurationError(f"environment variable(s) not set: {', '.join(missing)}")
