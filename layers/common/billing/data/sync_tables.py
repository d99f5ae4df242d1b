"""The sync table (DESIGN.md section 8): this deployment's own state of its
sync with Stripe, one row per thing that moves.

- BackfillRow: one import of the Stripe account (billing.sync.backfill), its
  checkpoint per object type. Every checkpoint write of a running run is a
  stream record the backfill worker processes: the write is the trigger.
- BackfillGuardRow: the running run's claim (one run at a time).
- EventsPollRow: the Events API cursor of the missed-events poll
  (billing.sync.events_poll), one row.

Both are written conditionally on their lock_version. Neither is billing
state: the objects a run applies write their own ledger rows.
"""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.models import Model

from billing.core.settings import SYNC_TABLE
from billing.data.tables import _Meta, _table


class BackfillRow(Model):
    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # the run's id, bf_<ulid>
    kind = UnicodeAttribute(default="backfill")  # the stream filter's: backfill rows only
    status = UnicodeAttribute()  # running | completed
    # Checkpoints written so far; a stream record is processed only if its
    # step is the row's (an older record has nothing left to do).
    step = NumberAttribute(default=0)
    nudges = NumberAttribute(default=0)  # resume requests: each is a stream record at the same step
    page_size = NumberAttribute(default=100)
    # Per object type, in import order: {type, seen, applied, unchanged, stale,
    # failed, cursor, done, pages, last_error}.
    progress = JSONAttribute(default=list)
    requested_by = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    lock_version = VersionAttribute()


class BackfillGuardRow(Model):
    """One run at a time: the running run's claim, put with the run's insert
    (attribute_not_exists) and deleted with its last checkpoint."""

    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # "backfill#running"
    kind = UnicodeAttribute(default="guard")
    run_id = UnicodeAttribute()


class EventsPollRow(Model):
    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # "events_poll"
    kind = UnicodeAttribute(default="events_poll")
    cursor_id = UnicodeAttribute(null=True)  # the newest event passed: the next run reads after it
    cursor_created = NumberAttribute(null=True)  # its `created` (unix seconds)
    behind_seconds = NumberAttribute(default=0)  # how far the last run was left behind (0: caught up)
    stored_total = NumberAttribute(default=0)  # events only the poll found, since the first run
    last_run_at = UnicodeAttribute(null=True)
    lock_version = VersionAttribute()
