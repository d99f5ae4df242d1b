"""`python -m devstack run`: the local stack (DESIGN.md section 6)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from devstack.signals import StopSignal
from devstack.stack import LocalStack, Settings, StartupError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description="Run template.yaml locally, without Docker.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the local stack and serve the API")
    parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        settings = Settings.from_env()
        stack = LocalStack(settings).start()
    except StartupError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1

    stop = StopSignal()
    processor = "Fake"
    if settings.stripe_api_key:
        processor = f"Stripe-compatible server at {settings.stripe_api_base} (STRIPE_API_BASE)" \
            if settings.stripe_api_base else "Stripe (STRIPE_API_KEY)"
    has_webhook = any(r.path == "/v1/webhooks/stripe" for f in stack.functions for r in f.routes)
    webhook = f"  webhook:    {stack.url}/v1/webhooks/stripe (STRIPE_WEBHOOK_SECRET)\n" if has_webhook else ""
    partner = next((r.event_bus for f in stack.functions for r in f.rules), None)
    eventbridge = (f"  events in:  {stack.url}/_local/events/partner ({partner}; make trigger VIA=eventbridge)\n"
                   if partner else "")
    eventbridge += f"  events out: {stack.url}/_local/events/published (the domain event bus)\n"
    print(
        f"billing-functions local stack ready in {time.monotonic() - started:.1f}s\n"
        f"  API:        {stack.url}/v1\n"
        f"  console:    {stack.url}/console/ (the operator console)\n"
        f"{webhook}"
        f"{eventbridge}"
        f"  DynamoDB:   {stack.ddb_endpoint}\n"
        f"  processor:  {processor}, meter API {settings.meter_api}\n"
        f"  functions:  {', '.join(sorted(stack.runtimes))}\n"
        f"try:  curl -s {stack.url}/v1/health\n"
        "Ctrl-C stops.",
        flush=True,
    )
    stop.wait()
    print("stopping...", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
