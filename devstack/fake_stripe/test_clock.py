"""The Fake's test clock: `advance(seconds)` moves billing time on, as
Stripe's test clocks do, and runs what comes due in order: incomplete
subscriptions expire after 23 hours, trials warn three days before they end
and then end, periods renew (an invoice paid, or failed, by the default
payment method's test card), cancellations at period end take effect, and
paused collection resumes. Every change records its events."""

from __future__ import annotations

import copy
from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.subscriptions import ENDED, SubscriptionsMixin, add_interval

INCOMPLETE_EXPIRES_SECONDS: Final = 23 * 3600
TRIAL_WARNING_SECONDS: Final = 3 * 86400
MAX_ADVANCE_SECONDS: Final = 5 * 366 * 86400


class ClockMixin(SubscriptionsMixin):
    def _init_state(self) -> None:
        super()._init_state()
        self._trial_warned: set[str] = set()

    def advance(self, seconds: int) -> JSONDict:
        """Move billing time on by `seconds` and run what came due: {"now", "events"}."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_ADVANCE_SECONDS:
            raise ValueError(f"seconds must be an integer between 1 and {MAX_ADVANCE_SECONDS}")
        with self._lock:
            before = len(self._events)
            self._billing_offset += seconds
            while self._next_due():
                pass
            return {"now": self._billing_now(), "events": len(self._events) - before}

    def _next_due(self) -> bool:
        """Run the earliest thing due by now, if any (True); things due at the same time run in creation order."""
        now = self._billing_now()
        due: list[tuple[int, int, str, JSONDict]] = []
        for order, sub in enumerate(self._subscriptions.values()):
            for at, what in self._due(sub):
                if at <= now:
                    due.append((at, order, what, sub))
        if not due:
            return False
        at, _, what, sub = min(due, key=lambda d: (d[0], d[1]))
        getattr(self, f"_on_{what}")(sub, at)
        return True

    def _due(self, sub: JSONDict) -> list[tuple[int, str]]:
        if sub["status"] in ENDED:
            return []
        if sub["status"] == "incomplete":
            return [(sub["created"] + INCOMPLETE_EXPIRES_SECONDS, "incomplete_expired")]
        out = []
        if sub["status"] == "trialing" and sub["id"] not in self._trial_warned and sub["trial_end"]:
            out.append((max(sub["trial_start"] or 0, sub["trial_end"] - TRIAL_WARNING_SECONDS), "trial_will_end"))
        resumes_at = (sub.get("pause_collection") or {}).get("resumes_at")
        if resumes_at:
            out.append((resumes_at, "resume_collection"))
        out.append((sub["items"]["data"][0]["current_period_end"], "period_end"))
        return out

    def _on_incomplete_expired(self, sub: JSONDict, at: int) -> None:
        before = copy.deepcopy(sub)
        sub["status"] = "incomplete_expired"
        invoice = self._invoices.get(sub.get("latest_invoice") or "")
        if invoice is not None and invoice["status"] == "open":
            self._close(invoice, "void")
        self._save(sub, before)

    def _on_trial_will_end(self, sub: JSONDict, at: int) -> None:
        self._trial_warned.add(sub["id"])
        self._emit("customer.subscription.trial_will_end", sub)

    def _on_resume_collection(self, sub: JSONDict, at: int) -> None:
        before = copy.deepcopy(sub)
        sub["pause_collection"] = None
        self._save(sub, before)

    def _on_period_end(self, sub: JSONDict, at: int) -> None:
        """A trial ends or a period renews: a new period and its invoice, paid
        or failed; or, set to cancel at period end, the subscription ends."""
        if sub["cancel_at_period_end"]:
            self._end(sub, at)
            return
        before = copy.deepcopy(sub)
        recurring = sub["items"]["data"][0]["price"]["recurring"]
        new_end = add_interval(at, recurring["interval"], recurring["interval_count"])
        for item in sub["items"]["data"]:
            item.update(current_period_start=at, current_period_end=new_end)
        lines = [self._line(sub["id"], item, item["price"]["unit_amount"] * item["quantity"], (at, new_end),
                            proration=False, description=f"{item['quantity']} x {self._product_name(item)}")
                 for item in sub["items"]["data"]]
        lines += self._pending_lines.pop(sub["id"], [])
        invoice = self._new_invoice(sub, "subscription_cycle", lines, (at, new_end))
        sub["latest_invoice"] = invoice["id"]
        self._finalize(invoice)
        if sub["status"] == "trialing":
            sub["status"] = "active"  # until the payment says otherwise
        pause = sub.get("pause_collection")
        if pause:
            self._close(invoice, pause["behavior"])
        elif self._settle(invoice, self._collect_with(sub)):
            sub["status"] = "active"
        else:
            sub["status"] = "past_due"
        self._save(sub, before)
