"""Usage reconciliation's rows (DESIGN.md section 10), in the sync table
beside the backfill's: this deployment's own state of its sync with Stripe,
none of it usage (no write per usage event: a run reads the usage rows).

- ReconRunRow: one run over a window; its checkpoint (the last
  customer-meter pair compared) and totals move in one conditional write
  with the drift rows found since the last one, and every such write is the
  stream record the reconciler processes next (the write is the trigger).
- ReconDriftRow: one drifted bucket of a run (`<run>#drift#<seq>`), numbered
  in the order the run found them, so the run's report pages by key.
- ReconRunListRow: the newest runs' ids, newest first (the runs list reads
  one row, never a scan).
- RepairRow: what repair did to one bucket (customer, meter, hour) over
  every run: the meter events it sent and the cancels it made, who, when,
  which run. Its `n` numbers the bucket's repair identifiers.
"""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.models import Model

from billing.core.settings import SYNC_TABLE
from billing.data.tables import _Meta, _table


class ReconRunRow(Model):
    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # ur_<ulid>, or ur_h_<start> / ur_d_<start> for scheduled runs
    kind = UnicodeAttribute(default="usage_reconciliation")  # the reconciler's stream filter
    status = UnicodeAttribute()  # running | done
    start = NumberAttribute()  # unix seconds, hour-aligned
    end = NumberAttribute()
    event_name = UnicodeAttribute(null=True)
    customer_id = UnicodeAttribute(null=True)
    step = NumberAttribute(default=0)  # checkpoints so far; a stream record at an older step is spent
    nudges = NumberAttribute(default=0)
    # The last pair compared, [customer_id, event_name] (pairs go in that order); null: none yet.
    position = JSONAttribute(null=True)
    buckets = NumberAttribute(default=0)  # buckets compared, drifted or not
    drifted = NumberAttribute(default=0)  # drift rows written: <pk>#drift#1..drifted
    drift_value = NumberAttribute(default=0)  # sum of |difference|
    stripe_requests = NumberAttribute(default=0)
    rows_read = NumberAttribute(default=0)
    requested_by = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    repaired_at = UnicodeAttribute(null=True)
    repaired_by = UnicodeAttribute(null=True)
    lock_version = VersionAttribute()


class ReconDriftRow(Model):
    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # <run id>#drift#<seq>
    kind = UnicodeAttribute(default="usage_reconciliation_drift")
    entry = JSONAttribute()  # the drift entry as the API shows it


class ReconRunListRow(Model):
    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # "usage_reconciliation#runs"
    kind = UnicodeAttribute(default="usage_reconciliation_list")
    run_ids = JSONAttribute(default=list)  # newest first, capped
    lock_version = VersionAttribute()


class RepairRow(Model):
    class Meta(_Meta):
        table_name = _table(SYNC_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # usage_repair#<bucket>
    kind = UnicodeAttribute(default="usage_repair")
    customer_id = UnicodeAttribute()
    event_name = UnicodeAttribute()
    hour = NumberAttribute()
    # [{n, action: send|cancel, identifier, value, run_id, by, at, status: sending|sent|failed, error}]
    actions = JSONAttribute(default=list)
    lock_version = VersionAttribute()
