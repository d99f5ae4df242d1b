"""What identifies a customer and what a caller may set on one: the owner
(validated, keyed losslessly), the guard items' keys that keep owner and
processor id unique, the processor idempotency key of a create, and the
attribute rules (Stripe's metadata contract, the reserved owner keys)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from billing.core import metadata
from billing.core.errors import ValidationFailed

RESERVED_METADATA = ("owner_type", "owner_id")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_OWNER_LENGTH = 255


@dataclass
class CustomerAttrs:
    """What a caller may set on a customer (all optional)."""

    email: str | None = None
    name: str | None = None
    currency: str | None = None
    tax_exempt: str | None = None
    preferred_locale: str | None = None
    preferred_timezone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def validate_owner(owner_type: str, owner_id: str) -> None:
    problems = {}
    for name, value in (("owner_type", owner_type), ("owner_id", owner_id)):
        if not value:
            problems[name] = "must not be empty"
        elif len(value) > MAX_OWNER_LENGTH:
            problems[name] = f"longer than {MAX_OWNER_LENGTH} characters"
        elif _CONTROL.search(value):
            problems[name] = "contains control characters"
    if problems:
        raise ValidationFailed.of_fields("invalid owner", problems)


def owner_key(owner_type: str, owner_id: str) -> str:
    # JSON keeps any character in either part unambiguous (no separator to escape).
    return json.dumps([owner_type, owner_id], ensure_ascii=False)


def owner_guard(processor: str, owner_type: str, owner_id: str) -> str:
    return "guard#owner#" + json.dumps([processor, owner_type, owner_id], ensure_ascii=False)


def processor_guard(processor: str, processor_id: str) -> str:
    return f"guard#processor_id#{processor}#{processor_id}"


def created_guard(processor: str, processor_id: str) -> str:
    """Who answered 201 for a processor customer the API created: claimed by
    the API call that wrote the row, or, when Stripe's customer.created wrote
    it first, by the first of the calls whose create made that customer."""
    return f"guard#created#{processor}#{processor_id}"


def create_idempotency_key(processor: str, owner_type: str, owner_id: str, generation: int) -> str:
    """Derived from the owner, so concurrent creators get one processor customer."""
    digest = hashlib.sha256(json.dumps([processor, owner_type, owner_id, generation]).encode()).hexdigest()
    return f"customer-create-{digest[:48]}"


def check_attrs(attrs: CustomerAttrs) -> None:
    reserved = sorted(set(attrs.metadata) & set(RESERVED_METADATA))
    if reserved:
        raise ValidationFailed(f"invalid metadata: {', '.join(reserved)}",
                               {"metadata": dict.fromkeys(reserved, "reserved for the owner link")})
    metadata.validate(attrs.metadata)
    if len(attrs.metadata) + len(RESERVED_METADATA) > metadata.MAX_KEYS:
        raise ValidationFailed("invalid metadata: too many keys",
                               {"metadata": {"metadata": f"at most {metadata.MAX_KEYS - 2} keys"}})


def is_valid_owner(owner_type: str, owner_id: str) -> bool:
    try:
        validate_owner(owner_type, owner_id)
    except ValidationFailed:
        return False
    return True
