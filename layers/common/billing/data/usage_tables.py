"""The usage table (DESIGN.md section 2): each accepted usage event's row,
the outbox the meter reporter's stream reads, and the sweeper's lane
positions, beside the models of billing.data.tables they share their bases with."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import IncludeProjection
from pynamodb.models import Model

from billing.core.settings import METER_EVENTS_TABLE
from billing.data.tables import _index, _Meta, _table


class MeterEventRow(Model):
    """One accepted usage event: the outbox row the stream delivers and the
    audit record of its own transitions (pending -> reported | failed |
    canceled, each stamped on the row: no ledger row is written for usage).

    The key is the caller's identifier, so the row's own put (with
    attribute_not_exists) is the identifier's uniqueness guard. Transitions
    are conditional on `stripe_status` (a transition is valid from a state,
    whatever else changed); `lock_version` is bumped by every write so a
    reader can still tell two versions of a row apart.

    Write budget (DESIGN.md section 7): the row stays under 1 KB and the
    happy path makes one index entry in all (billing.metering.outbox).
    """

    class Meta(_Meta):
        table_name = _table(METER_EVENTS_TABLE)

    # Every row, once: its lane (from the identifier) and acceptance time.
    by_accepted = _index("by_accepted", "lane", "inserted_at",
                         projection=IncludeProjection(["customer_id", "event_name"]))
    # Sparse: failed rows, and pending ones off the happy path ("failed#3").
    by_status = _index("by_status", "status_key", "updated_at",
                       projection=IncludeProjection(["customer_id", "event_name"]))

    pk = UnicodeAttribute(hash_key=True)  # the identifier
    id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    stripe_customer_id = UnicodeAttribute()
    event_name = UnicodeAttribute()
    value = NumberAttribute()
    occurred_ts = NumberAttribute()  # unix seconds, what Stripe receives
    occurred_at = UnicodeAttribute()
    operation_id = UnicodeAttribute(null=True)
    request_digest = UnicodeAttribute()  # what a replay of the same PUT must match
    stripe_status = UnicodeAttribute()
    lane = UnicodeAttribute(null=True)
    status_key = UnicodeAttribute(null=True)
    reported_at = UnicodeAttribute(null=True)
    failed_at = UnicodeAttribute(null=True)
    canceled_at = UnicodeAttribute(null=True)
    stripe_error = JSONAttribute(null=True)
    attempts = NumberAttribute(default=0)
    sweeps = NumberAttribute(default=0)
    # When the row last became pending (accepted, or retried): the age that
    # decides whether a resend is still inside Stripe's deduplication window.
    pending_since = UnicodeAttribute(null=True)
    # The identifier Stripe knows the event by: absent while it is the row's
    # own (pk); a derived one after a retry of an event Stripe rejected
    # (billing.metering.lifecycle), since Stripe drops a resent identifier.
    stripe_identifier = UnicodeAttribute(null=True)
    # A send whose answer never came (timeout, 5xx) may have reached Stripe:
    # stamped on the failure path only, so a cancel adjusts it at Stripe.
    maybe_sent_at = UnicodeAttribute(null=True)
    inserted_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    lock_version = NumberAttribute(default=1)


class UsageSweepRow(Model):
    """The sweeper's position in one lane of `by_accepted` (pk `#sweep#<lane>`,
    which no identifier can be; in none of the rows' indexes)."""

    class Meta(_Meta):
        table_name = _table(METER_EVENTS_TABLE)

    pk = UnicodeAttribute(hash_key=True)
    # Where the next sweep reads on from: after the row (position, position_pk)
    # of by_accepted, or, without position_pk, after every row accepted at or
    # before `position`.
    position = UnicodeAttribute()  # an inserted_at
    position_pk = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute()
