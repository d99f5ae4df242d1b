"""SnapStart: what runs before Lambda snapshots an initialised function, and
after it restores one (the runtime's hooks, `snapshot_restore_py`).

With the SnapStart parameter on (template.yaml), Lambda runs a published
version's init once, snapshots the process, and starts execution
environments from that snapshot: whatever the snapshot holds is shared by
every one of them and is as old as the version.

- Before the snapshot, what the function's invocations need and can share
  is loaded, so no restored environment pays for it: modules register their
  warm-ups with `before_snapshot` (every API route group, the Stripe SDK
  where the processor is used). Nothing that holds a secret, a credential or
  a connection is built then.
- After a restore, every in-process random source is seeded again: `random`,
  which the retry jitter of botocore, the Stripe SDK and this package draw
  from (ids draw from os.urandom, the kernel's, which nothing in the
  snapshot holds). Then every cached session, client, credential and
  connection is dropped, with the secrets read through them: they are built
  again in this environment and the secrets re-read on first use (one may
  have rotated since the snapshot). Modules register their resets with
  `after_restore`; this module drops the shared ones (boto3's default
  session, Powertools parameters' providers and cached values).

Outside Lambda (tests, the local stack) the runtime module is absent: the
hooks are kept here only, and `run_before_snapshot()` / `run_after_restore()`
run them.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable

Hook = Callable[[], None]

_before: list[Hook] = []
_after: list[Hook] = []


def before_snapshot[H: Hook](hook: H) -> H:
    """Run `hook` before Lambda snapshots this process (usable as a decorator)."""
    _before.append(hook)
    return hook


def after_restore[H: Hook](hook: H) -> H:
    """Run `hook` after Lambda restores this process from a snapshot, in registration order."""
    _after.append(hook)
    return hook


def run_before_snapshot() -> None:
    _run(_before)


def run_after_restore() -> None:
    _run(_after)


def _run(hooks: list[Hook]) -> None:
    # By index: a warm-up that imports a module runs the hooks that module registers.
    done = 0
    while done < len(hooks):
        hooks[done]()
        done += 1


@after_restore
def _reseed() -> None:
    # From os.urandom: each restored environment draws its own jitter.
    random.seed()


@after_restore
def _drop_shared_clients() -> None:
    # Only what this process has loaded (already imported: the imports cost nothing).
    if "boto3" in sys.modules:
        import boto3

        # Its botocore session caches credentials; boto3.client() builds a new one.
        boto3.DEFAULT_SESSION = None
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        from aws_lambda_powertools.utilities import parameters

        # Every provider (its boto3 client) and every cached value: secrets are read again.
        parameters.clear_caches()


try:
    from snapshot_restore_py import (  # type: ignore[import-not-found]  # Lambda's runtime only
        register_after_restore,
        register_before_snapshot,
    )
except ImportError:
    pass
else:
    register_before_snapshot(run_before_snapshot)
    register_after_restore(run_after_restore)
