"""Usage reconciliation (DESIGN.md section 10): per customer, meter (event
name) and UTC hour, does Stripe's meter event summary equal what we
reported, why not where it does not, and the repair Stripe still allows.

window (what a run may cover), tally (our side, read from the usage rows of
the window), summaries (Stripe's side, under a rate budget), drift (the
comparison and its classification), runs (stored runs and their
checkpoints), worker (a run's progress, resumable), repair (dry run and
apply), schedule (the runs a clock starts).
"""
