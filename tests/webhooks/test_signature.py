"""billing.webhooks.signature against the Stripe SDK's own verifier.

The webhook function verifies `Stripe-Signature` without importing the SDK
(cold start); these tests hold it to the SDK's decisions: every input that
`stripe.WebhookSignature.verify_header` accepts with some configured secret
is accepted, and every input it rejects is rejected.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.webhooks import signature

pytestmark = pytest.mark.unit

FIXTURES = json.loads((Path(__file__).resolve().parents[3] / "shared" / "stripe-fixtures" / "objects.json")
                      .read_text())
OLD, NEW = "whsec_old_secret_for_rotation", "whsec_new_secret_for_rotation"
NOW = int(time.time())


def payload() -> bytes:
    customer = dict(FIXTURES["customer"], email="jenny.rosen@example.com")
    event = {"id": "evt_sig_test", "object": "event", "type": "customer.updated", "created": NOW,
             "data": {"object": customer}, "livemode": False}
    return json.dumps(event).encode()


BODY = payload()


def v1(secret: str, timestamp: int, body: bytes = BODY) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sdk_accepts(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance=signature.TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            continue
        except TypeError:
            # hmac.compare_digest refuses non-ASCII str: the SDK crashes, which rejects.
            continue
        return True
    return False


def ours_accepts(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    try:
        signature.verify(body, header, secrets)
    except signature.SignatureError:
        return False
    return True


Case = tuple[str, bytes, str | None, list[str], bool]


def cases(now: int) -> list[Case]:
    """(name, body, header, secrets, expected), timed from `now` (the moment the test runs)."""
    good = f"t={now},v1={v1(OLD, now)}"
    return [
        # (name, body, header, secrets, expected)
        ("valid", BODY, good, [OLD], True),
        ("valid, signed by the SDK's own helper", BODY,
         stripe.WebhookSignature.generate_signature_header(BODY.decode(), OLD, now), [OLD], True),
        ("tampered body", BODY.replace(b"jenny.rosen", b"jenny.rosan"), good, [OLD], False),
        ("body with a trailing newline", BODY + b"\n", good, [OLD], False),
        ("wrong secret", BODY, good, [NEW], False),
        ("expired (tolerance + 1 s)", BODY, f"t={now - 301},v1={v1(OLD, now - 301)}", [OLD], False),
        ("old but inside the tolerance", BODY, f"t={now - 200},v1={v1(OLD, now - 200)}", [OLD], True),
        ("in the future", BODY, f"t={now + 3600},v1={v1(OLD, now + 3600)}", [OLD], True),
        ("timestamp changed after signing", BODY, f"t={now + 1},v1={v1(OLD, now)}", [OLD], False),
        ("missing header", BODY, None, [OLD], False),
        ("empty header", BODY, "", [OLD], False),
        ("garbage header", BODY, "not a signature", [OLD], False),
        ("no timestamp", BODY, f"v1={v1(OLD, now)}", [OLD], False),
        ("non-numeric timestamp", BODY, f"t=soon,v1={v1(OLD, now)}", [OLD], False),
        ("timestamp only", BODY, f"t={now}", [OLD], False),
        ("v0 only", BODY, f"t={now},v0={v1(OLD, now)}", [OLD], False),
        ("v1 without a value", BODY, f"t={now},v1", [OLD], False),
        ("a second t without a value", BODY, f"{good},t", [OLD], False),
        ("space before v1", BODY, f"t={now}, v1={v1(OLD, now)}", [OLD], False),
        ("upper-case hex", BODY, f"t={now},v1={v1(OLD, now).upper()}", [OLD], False),
        ("non-ASCII signature", BODY, f"t={now},v1=\u00e9{v1(OLD, now)[1:]}", [OLD], False),
        ("padded timestamp parses as int", BODY, f"t=0{now},v1={v1(OLD, now)}", [OLD], True),
        ("second of two secrets", BODY, f"t={now},v1={v1(NEW, now)}", [OLD, NEW], True),
        ("first of two secrets", BODY, good, [OLD, NEW], True),
        ("several v1 entries, one matches", BODY,
         f"t={now},v1={v1(NEW, now)},v1={'0' * 64},v1={v1(OLD, now)},v0=abc", [OLD], True),
        ("several v1 entries, none matches", BODY, f"t={now},v1={'0' * 64},v1={v1(NEW, now)}", [OLD], False),
        ("two secrets, several entries, each from one", BODY, f"t={now},v1={v1(NEW, now)},v1={v1(OLD, now)}",
         [OLD, NEW], True),
        ("extra = in the signature value", BODY, f"t={now},v1={v1(OLD, now)}=x", [OLD], True),
        ("blank secret", BODY, good, [" "], False),
    ]


CASE_NAMES = [c[0] for c in cases(NOW)]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_accepts_exactly_what_the_sdk_accepts(name: str) -> None:
    # Built now, not at collection: a long session must not age the timestamps.
    (_, body, header, secrets, expected), = [c for c in cases(int(time.time())) if c[0] == name]
    assert sdk_accepts(body, header, secrets) is expected, f"the case itself is wrong: {name}"
    assert ours_accepts(body, header, secrets) is expected


def pieces(now: int) -> list[str]:
    return [f"t={now}", f"t={now - 400}", "t=x", "t", f"v1={v1(OLD, now)}", f"v1={v1(NEW, now)}",
            f"v1={v1(OLD, now - 400)}", f"v0={v1(OLD, now)}", "v1", "v1=", "=", "", " ", "t==1", "junk=1"]


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.integers(min_value=0, max_value=len(pieces(NOW)) - 1), max_size=6),
       secrets=st.sampled_from([[OLD], [NEW], [OLD, NEW]]))
def test_any_combination_of_header_items_is_decided_like_the_sdk(items: list[int], secrets: list[str]) -> None:
    now_pieces = pieces(int(time.time()))
    header = ",".join(now_pieces[i] for i in items)
    assert ours_accepts(BODY, header, secrets) == sdk_accepts(BODY, header, secrets), header


def test_sign_produces_what_the_sdk_verifies() -> None:
    now = int(time.time())  # not NOW: a long session would age it past the tolerance
    header = signature.sign(BODY, NEW, now)
    assert stripe.WebhookSignature.verify_header(BODY, header, NEW, tolerance=300)
    assert signature.verify(BODY, header, [OLD, NEW]) == now


def test_the_error_never_repeats_the_header_the_body_or_a_secret() -> None:
    now = int(time.time())
    header = f"t={now},v1={v1(NEW, now)}"
    with pytest.raises(signature.SignatureError) as caught:
        signature.verify(BODY, header, [OLD])
    message = str(caught.value)
    assert message == "no signature matches the payload"
    for secret_or_data in (OLD, v1(NEW, now), "jenny.rosen@example.com"):
        assert secret_or_data not in message
