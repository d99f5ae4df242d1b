"""SnapStart's restore hooks (billing.core.snapstart).

Lambda's runtime offers `snapshot_restore_py` (register_before_snapshot,
register_after_restore); here a stub of it records what each function
registers. A snapshot is emulated by forking a warmed process twice: each
child is one restored execution environment. Python re-seeds `random` in a
forked child, which a restore from a snapshot does not, so each child first
puts back the parent's `random` state: both start from the same memory, as
two restores of one snapshot do. Without the hooks they then draw the same
jitter (the hazard is real); with them, different ids and jitter, and no
session, client, connection or cached secret of the snapshot survives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.template import Stack

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "common"

# Lambda's runtime module, as far as the functions use it.
RUNTIME_STUB = """
before, after = [], []

def register_before_snapshot(func, *args, **kwargs):
    before.append(func)
    return func

def register_after_restore(func, *args, **kwargs):
    after.append(func)
    return func
"""

_PRELUDE = """
import json, os, random, sys
sys.path[:0] = [{stub!r}, {code!r}, {layer!r}]
import snapshot_restore_py as runtime
import app
registered = {{"before": [f.__qualname__ for f in runtime.before], "after": [f.__qualname__ for f in runtime.after]}}
"""


def _run(tmp_path: Path, logical_id: str, script: str) -> dict[str, Any]:
    (tmp_path / "snapshot_restore_py.py").write_text(RUNTIME_STUB)
    spec = next(f for f in Stack(ROOT / "template.yaml").functions({}) if f.logical_id == logical_id)
    env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_LAMBDA_FUNCTION_NAME": logical_id, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
           "POWERTOOLS_METRICS_DISABLED": "true", **spec.environment}
    prelude = _PRELUDE.format(stub=str(tmp_path), code=str(spec.code_dir), layer=str(LAYER))
    out = subprocess.run([sys.executable, "-c", prelude + script], env=env,  # noqa: S603 - this interpreter
                         capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("logical_id", sorted(f.logical_id for f in Stack(ROOT / "template.yaml").functions({})))
def test_every_function_registers_the_hooks_with_lambdas_runtime(tmp_path: Path, logical_id: str) -> None:
    result = _run(tmp_path, logical_id, "print(json.dumps(registered))")
    assert result == {"before": ["run_before_snapshot"], "after": ["run_after_restore"]}


# The API function warmed and used as a snapshot would find it: a DynamoDB
# client, PynamoDB connections, the StripeProcessor built with its key read
# from SSM (moto) through Powertools' cache. Then two "restores".
_SNAPSHOT = """
import boto3
from moto import mock_aws
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from billing import processor
from billing.core import ids
from billing.data import tables

for hook in runtime.before:
    hook()
warmed = {"groups": sorted(app.app.loaded()), "stripe": "stripe" in sys.modules}

with mock_aws():
    boto3.client("ssm").put_parameter(Name=os.environ["STRIPE_API_KEY_PARAM"], Value="sk_test_snapshot",
                                      Type="SecureString")
    built = type(processor.get_processor()).__name__
boto3.client("dynamodb")
tables.connection()
tables.CustomerRow._get_connection()
tables.LedgerRow._get_connection()

def cached():
    return {"boto3 session": boto3.DEFAULT_SESSION is not None, "connection": tables._connection is not None,
            "model connections": [m._connection is not None for m in (tables.CustomerRow, tables.LedgerRow)],
            "processor": processor._cached is not None, "parameters": sorted(DEFAULT_PROVIDERS)}

snapshot = random.getstate()

def restore(run_hooks):
    read, write = os.pipe()
    if os.fork() == 0:
        random.setstate(snapshot)  # the snapshot's memory: fork re-seeded it, a restore does not
        if run_hooks:
            for hook in runtime.after:
                hook()
        found = {"ids": [ids.new_id("cus") for _ in range(3)], "jitter": [random.random() for _ in range(3)],
                 "cached": cached()}
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found = json.loads(pipe.read())
    os.wait()
    return found

print(json.dumps({"warmed": warmed, "built": built, "before": cached(),
                  "restored": [restore(True), restore(True)], "unhooked": [restore(False), restore(False)]}))
"""


def test_two_restores_of_one_snapshot_draw_different_ids_and_rebuild_every_client(tmp_path: Path) -> None:
    result = _run(tmp_path, "ApiFunction", _SNAPSHOT)
    # Before the snapshot: every route group and the Stripe SDK loaded.
    from billing.api.app import ROUTE_GROUPS

    assert result["warmed"] == {"groups": sorted(g.module for g in ROUTE_GROUPS), "stripe": True}
    assert result["built"] == "StripeProcessor"
    everything = {"boto3 session": True, "connection": True, "model connections": [True, True],
                  "processor": True, "parameters": ["ssm"]}
    assert result["before"] == everything
    first, second = result["restored"]
    assert set(first["ids"]).isdisjoint(second["ids"])
    assert first["jitter"] != second["jitter"]
    nothing = {"boto3 session": False, "connection": False, "model connections": [False, False],
               "processor": False, "parameters": []}
    assert first["cached"] == second["cached"] == nothing
    # Without the hooks, two restores draw the same jitter and keep the snapshot's clients.
    same_a, same_b = result["unhooked"]
    assert same_a["jitter"] == same_b["jitter"]
    assert same_a["cached"] == everything
