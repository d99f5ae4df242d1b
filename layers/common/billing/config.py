"""Settings read from the environment the template gives each function.

Read lazily and once: a route that does not need a table never asks for its
variable, and a missing one fails with one line naming it.
"""

from __future__ import annotations

import os
from functools import cache

from billing.errors import ConfigurationError


@cache
def require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def optional(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip() or default
