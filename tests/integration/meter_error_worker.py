"""Runs billing.metering.meter_errors.handle_meter_error_event in a process of its own
with a stack function's environment (tables) and the stack's shared Fake installed
as a function worker installs it, as the webhook processor would, and prints how
many rows it moved."""

from __future__ import annotations

import json
import sys

from billing.data.ledger import Actor
from billing.metering.meter_errors import handle_meter_error_event
from devstack.runtime import install_fake_processor


def main(event_id: str, event_type: str, fake_processor_url: str) -> None:
    install_fake_processor(fake_processor_url)
    moved = handle_meter_error_event(event_id, event_type, Actor.webhook(event_id))
    print(json.dumps({"moved": moved}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
