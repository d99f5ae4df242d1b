"""The Fake processor: Stripe in memory, for the tests and the local stack.

Development and test code, never deployed: the layer builds only the
StripeProcessor and imports nothing from devstack/. The local stack serves
one FakeProcessor to every function worker over HTTP (rpc.py) and installs a
client of it (remote.py) in each worker with billing.processor.set_processor
(devstack/runtime.py); in-process tests install a FakeProcessor the same way.

- processor.py: FakeProcessor, the controls tests and the stack use (faults,
  seeding, snapshot) over core.py (state, one lock, the path every call
  takes) and one mixin per resource: customers.py, payment_methods.py,
  meters.py, meter_adjustments.py (cancels and summaries), promotions.py.
- cards.py (Stripe's test payment methods), faults.py (scripted faults,
  ProcessCrash), idempotency.py (Stripe's idempotency keys), shapes.py (shapes.json) and
  countries.py (Stripe's object shapes, ISO 3166 codes).
- rpc.py (one Fake served over HTTP), remote.py (its client in each worker,
  and the worker's exit on a scripted crash).
- control.py: the stack's `/_local/fake-stripe/...` routes.
"""

import sys

from devstack.template import ROOT_LAYER

# The Fake speaks the layer's interface (billing.processor.base and errors):
# the stack, which does not otherwise put the layer on its path, needs it.
if str(ROOT_LAYER) not in sys.path:
    sys.path.insert(0, str(ROOT_LAYER))

from devstack.fake_stripe.cards import TEST_CARDS, TestCard
from devstack.fake_stripe.control import RPC_PATH, FakeStripe
from devstack.fake_stripe.faults import FAULT_ALIASES, NETWORK_FAULT, ProcessCrash
from devstack.fake_stripe.processor import FakeProcessor
from devstack.fake_stripe.remote import CRASH_EXIT_CODE, LOCAL_STACK_ENV, RemoteFakeProcessor
from devstack.fake_stripe.rpc import FakeProcessorServer, dispatch

__all__ = [
    "CRASH_EXIT_CODE",
    "FAULT_ALIASES",
    "LOCAL_STACK_ENV",
    "NETWORK_FAULT",
    "RPC_PATH",
    "TEST_CARDS",
    "FakeProcessor",
    "FakeProcessorServer",
    "FakeStripe",
    "ProcessCrash",
    "RemoteFakeProcessor",
    "TestCard",
    "dispatch",
]
