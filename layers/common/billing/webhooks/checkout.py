"""checkout.session.completed: link what Checkout made to the customer.

The session names the processor customer (this deployment always opens
Checkout for one) and, in subscription mode, the subscription it created.
That subscription is fetched from the processor and applied through its
projection (billing.webhooks.objects), so it is linked to the customer and
in the owner's billing summary whether or not its own
customer.subscription.* events have arrived yet; the ledger row says it
came from Checkout. A setup or payment session only records the ledger
row. A session for a customer not projected yet is deferred.
"""

from __future__ import annotations

from billing.customers.records import find_by_processor_id
from billing.data import ledger
from billing.data.transactions import retry_on_conflict
from billing.processor.fields import reference, text
from billing.webhooks import objects, store
from billing.webhooks.context import Context, Deferred

EVENT_TYPES = ("checkout.session.completed",)


def apply(ctx: Context) -> str:
    session = ctx.object()
    processor_customer = reference(session.get("customer"))
    if processor_customer is None:
        return ctx.finish(store.IGNORED)  # a guest's Checkout: nothing of ours to link it to
    customer = find_by_processor_id(processor_customer)
    if customer is None:
        raise Deferred("customer", processor_customer)
    subscription_id = reference(session.get("subscription"))

    def attempt() -> str:
        with ctx.transaction() as tw:
            ledger.append(tw, type_=ctx.type, subject_type="customer", subject_id=customer.pk, actor=ctx.actor,
                          data={"stripe_event_id": ctx.id, "checkout_session_id": session["id"],
                                "mode": text(session.get("mode")), "subscription_id": subscription_id,
                                "setup_intent_id": reference(session.get("setup_intent")),
                                "payment_intent_id": reference(session.get("payment_intent"))})
        return store.PROCESSED

    def record() -> str:
        return retry_on_conflict(attempt, subject=f"checkout session {session['id']}")

    if subscription_id is not None:
        current = ctx.refetch("subscription", subscription_id, fallback={})
        if current:
            # A subscription already projected from a newer event (its own
            # customer.subscription.* came first) keeps that state; the
            # Checkout is recorded all the same, so its ledger row (and
            # domain event) does not depend on the order of delivery.
            return objects.apply(ctx, objects.SPEC_BY_TYPE["subscription"], current, stale=record)
    return record()
