"""`make backfill`: import the Stripe account into the running local stack
(`make run`) through `POST /v1/sync/backfill`, and watch it with a progress
bar per object type until it completes.

    python -m devstack.backfill                         # every type
    python -m devstack.backfill --types customer payment_method --page-size 50
    python -m devstack.backfill --resume bf_01...       # run a stalled run's checkpoint again
    python -m devstack.backfill --watch bf_01...        # watch a run already started
    make backfill BACKFILL_ARGS="--types customer"

Stripe's lists say nothing of their length, so a type's bar shows what it
has seen so far and fills when the type is done; the line under it counts
applied, unchanged, stale and failed objects. Ctrl-C stops watching, not the
run: it goes on in the stack, and --watch picks it up again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

BAR_WIDTH = 24
TYPES = ("product", "price", "coupon", "promotion_code", "customer", "payment_method", "subscription", "invoice",
         "charge")


def _call(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - the local stack's http:// URL
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        raise SystemExit(f"backfill: {method} {url} answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"backfill: cannot reach the local stack at {url} ({exc.reason}); is `make run` up?"
                         ) from None


def render(run: dict[str, Any]) -> list[str]:
    """The run as lines: one bar per type, then the totals."""
    lines = []
    for entry in run["types"]:
        if entry["done"]:
            filled = BAR_WIDTH
        elif entry["type"] == run.get("current_type"):
            filled = min(BAR_WIDTH - 1, entry["pages"] % BAR_WIDTH)  # moves with each page
        else:
            filled = 0
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        state = "done" if entry["done"] else ("importing" if entry["type"] == run.get("current_type") else "waiting")
        lines.append(f"  {entry['type']:<15} [{bar}] {entry['seen']:>7} seen  {state}")
    totals = run["totals"]
    lines.append(f"  {run['status']}: {totals['applied']} applied, {totals['unchanged']} unchanged, "
                 f"{totals['stale']} stale, {totals['failed']} failed, {run['checkpoints']} pages")
    return lines


def watch(base: str, run_id: str, out: TextIO, interval: float = 0.5) -> dict[str, Any]:
    drawn = 0
    tty = out.isatty()
    while True:
        run = _call(f"{base}/v1/sync/backfill/{run_id}")
        lines = render(run)
        if tty and drawn:
            out.write(f"\x1b[{drawn}F")  # back to the first line of the last drawing
        if tty or run["status"] == "completed":
            out.write("\n".join(f"{line}\x1b[K" if tty else line for line in lines) + "\n")
            drawn = len(lines)
        out.flush()
        if run["status"] == "completed":
            for entry in run["types"]:
                if entry["last_error"]:
                    out.write(f"  last {entry['type']} failure: {entry['last_error']['type']} "
                              f"({entry['last_error']['object_id']}): {entry['last_error']['message']}\n")
            return run
        time.sleep(interval)


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="devstack.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '3000')}",
                        help="the local stack (default http://127.0.0.1:$PORT)")
    parser.add_argument("--types", nargs="+", choices=TYPES, help="default: every type")
    parser.add_argument("--page-size", type=int, default=100)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", metavar="RUN_ID", help="run a stalled run's checkpoint again, then watch it")
    group.add_argument("--watch", metavar="RUN_ID", help="watch a run already started")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    if args.watch:
        run_id = args.watch
    elif args.resume:
        run_id = _call(f"{base}/v1/sync/backfill/{args.resume}/resume", "POST")["id"]
    else:
        body: dict[str, Any] = {"page_size": args.page_size}
        if args.types:
            body["types"] = args.types
        run_id = _call(f"{base}/v1/sync/backfill", "POST", body)["id"]
    out.write(f"backfill {run_id} ({base}/v1/sync/backfill/{run_id})\n")
    try:
        run = watch(base, run_id, out)
    except KeyboardInterrupt:
        out.write(f"\nstopped watching; the run goes on: python -m devstack.backfill --watch {run_id}\n")
        return 130
    return 0 if run["totals"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
