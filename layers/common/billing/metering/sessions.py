"""The v2 meter event session the reporter streams usage with: one per
process, renewed shortly before it expires (billing.metering.delivery)."""

from __future__ import annotations

import threading
import time
from typing import Final

from billing.processor import get_processor
from billing.processor.base import unix_seconds

# Renew a v2 session this long before Stripe says it expires.
SESSION_MARGIN_SECONDS: Final = 60.0


class _SessionCache:
    """One v2 meter event session per process, renewed shortly before it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._expires - time.time() < SESSION_MARGIN_SECONDS:
                session = get_processor().create_meter_event_session()
                self._token = str(session["authentication_token"])
                self._expires = float(unix_seconds(session["expires_at"]))
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def clear(self) -> None:
        with self._lock:
            self._token, self._expires = None, 0.0


sessions = _SessionCache()
