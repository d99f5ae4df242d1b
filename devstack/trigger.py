"""`stripe trigger`, for the local stack: sign a sample event from
events/webhooks/stripe/ and POST it to the webhook endpoint, or deliver it
through the inbound EventBridge path (a Stripe event destination's partner
event source; no signature there).

    python -m devstack.trigger customer.updated
    python -m devstack.trigger payment_method.attached --set data.object.customer=cus_fake_00001
    python -m devstack.trigger v1.customer.updated --via eventbridge --set related_object.id=cus_fake_00001
    make trigger EVENT=invoice.paid
    make trigger EVENT=customer.updated VIA=eventbridge

Each delivery gets a fresh event id and `created` (now), so it is a new
event, not a duplicate; `--id` and `--created` pin them (to redeliver, or to
send an older event). `--set PATH=VALUE` sets a dotted path of the event
(VALUE is parsed as JSON when it can be, else taken as a string). The secret
is the first of STRIPE_WEBHOOK_SECRET (comma-separated, as the stack reads
it; default whsec_local_dev), unless --secret is given.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parent.parent / "events" / "webhooks" / "stripe"
DEFAULT_SECRET = "whsec_local_dev"
# devstack.stack.LOCAL_STRIPE_EVENT_SOURCE, spelled out: this script must not import the stack.
DEFAULT_EVENT_SOURCE = "aws.partner/stripe.com/ed_test_local"
VIAS = ("webhook", "eventbridge")


def available() -> list[str]:
    return sorted(p.stem for p in SAMPLES.glob("*.json"))


def sample(event_type: str) -> dict[str, Any]:
    path = SAMPLES / f"{event_type}.json"
    if not path.is_file():
        raise ValueError(f"no sample for {event_type!r}; available: {', '.join(available())}")
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def set_path(event: dict[str, Any], dotted: str, value: Any) -> None:
    node: Any = event
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            raise ValueError(f"{dotted}: {part} is not an object")
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise ValueError(f"{dotted}: not an object path")
    node[parts[-1]] = value


def build(event_type: str, *, event_id: str | None = None, created: int | None = None,
          sets: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """A sample event with a fresh id and `created`, like one `stripe trigger` makes."""
    event = sample(event_type)
    event["id"] = event_id or f"evt_local_{uuid.uuid4().hex[:24]}"
    now = int(time.time()) if created is None else created
    # Thin (v2) events write `created` as RFC 3339, snapshot events as unix seconds.
    event["created"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)) \
        if isinstance(event.get("created"), str) else now
    for dotted, value in sets or []:
        set_path(event, dotted, value)
    return event


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's scheme: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def post(url: str, event: dict[str, Any], secret: str) -> tuple[int, Any]:
    """POST the signed event; (status, parsed JSON body)."""
    payload = json.dumps(event).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the developer's own stack
        url, data=payload, method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "devstack-trigger",
                 "Stripe-Signature": signature_header(payload, secret)})
    return _send(request)


def _send(request: urllib.request.Request) -> tuple[int, Any]:
    """(status, parsed JSON body) of the stack's answer, an error status included."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, body.decode(errors="replace")


def eventbridge_event(event: dict[str, Any], source: str = DEFAULT_EVENT_SOURCE) -> dict[str, Any]:
    """The event as a Stripe event destination puts it on EventBridge:
    `detail-type` the Stripe type, `detail` the Stripe event itself."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": event["type"], "source": source,
        "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1", "resources": [f"arn:aws:events:us-east-1::event-source/{source}"], "detail": event,
    }


def post_partner(url: str, event: dict[str, Any], source: str = DEFAULT_EVENT_SOURCE) -> tuple[int, Any]:
    """POST the event to the stack's partner event source (/_local/events/partner)."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the developer's own stack
        url, data=json.dumps(eventbridge_event(event, source)).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "devstack-trigger"})
    return _send(request)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.trigger", description=__doc__.split("\n\n")[0])
    parser.add_argument("event_type", nargs="?", help="e.g. customer.updated (see --list)")
    parser.add_argument("--list", action="store_true", help="list the sample event types")
    parser.add_argument("--via", choices=VIAS, default="webhook",
                        help="webhook (signed POST, default) or eventbridge (the partner event source)")
    parser.add_argument("--url", default=None, help="default: the stack on PORT, the route --via names")
    parser.add_argument("--source", default=DEFAULT_EVENT_SOURCE, help="the partner event source (--via eventbridge)")
    parser.add_argument("--secret", default=None, help="signing secret (default: STRIPE_WEBHOOK_SECRET's first)")
    parser.add_argument("--id", dest="event_id", default=None, help="event id (default: a fresh one)")
    parser.add_argument("--created", type=int, default=None, help="event created, unix seconds (default: now)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE",
                        help="set a dotted path, e.g. data.object.customer=cus_fake_00001 (repeatable)")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print the event, do not send it")
    args = parser.parse_args(argv)
    if args.list or not args.event_type:
        print("\n".join(available()))
        return 0 if args.list else 2
    try:
        sets = []
        for item in args.sets:
            path, sep, raw = item.partition("=")
            if not sep or not path:
                raise ValueError(f"--set {item!r}: expected PATH=VALUE")
            sets.append((path, _value(raw)))
        event = build(args.event_type, event_id=args.event_id, created=args.created, sets=sets)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_only:
        print(json.dumps(event, indent=2))
        return 0
    base = f"http://127.0.0.1:{os.environ.get('PORT', '3000')}"
    url = args.url or base + ("/_local/events/partner" if args.via == "eventbridge" else "/v1/webhooks/stripe")
    secret = args.secret or (os.environ.get("STRIPE_WEBHOOK_SECRET") or DEFAULT_SECRET).split(",")[0].strip()
    try:
        if args.via == "eventbridge":
            status, body = post_partner(url, event, args.source)
        else:
            status, body = post(url, event, secret)
    except OSError as exc:
        print(f"error: cannot reach {url}: {exc} (is `make run` up?)", file=sys.stderr)
        return 1
    print(f"{event['type']} {event['id']} via {args.via} -> {status} {json.dumps(body)}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
