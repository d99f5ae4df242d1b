"""Cold import cost of each function, as Lambda pays it on a cold start.

Each sample is a fresh interpreter that sets the function's template
environment, puts its code folder and the layer on sys.path, and imports its
handler module; the figure is the median of RUNS samples. Beside them, the
floor every function pays anyway: a bare `import boto3` and a created
DynamoDB client.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "10"))

_PROBE = """
import json, os, sys, time
spec = json.loads(sys.argv[1])
os.environ.clear()
os.environ.update(spec["env"])
sys.path[:0] = spec["paths"]
started = time.perf_counter()
exec(spec["code"])
elapsed = time.perf_counter() - started
heavy = sorted(m for m in ("stripe", "pynamodb", "pydantic", "botocore", "boto3") if m in sys.modules)
print(json.dumps({"ms": elapsed * 1000, "loaded": heavy}))
"""


def _sample(code: str, paths: list[str], env: dict[str, str]) -> tuple[float, list[str]]:
    spec = json.dumps({"code": code, "paths": paths, "env": env})
    out = subprocess.run([sys.executable, "-c", _PROBE, spec], capture_output=True, text=True,  # noqa: S603
                         check=False, cwd=ROOT)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"importing with `{code}` failed: {last}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["ms"]), list(result["loaded"])


def _median(code: str, paths: list[str], env: dict[str, str]) -> tuple[float, list[str]]:
    samples, loaded = [], []
    for _ in range(RUNS):
        ms, loaded = _sample(code, paths, env)
        samples.append(ms)
    return statistics.median(samples), loaded


def run() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from devstack.template import Stack

    base_env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}
    rows: list[dict[str, Any]] = []
    floor_boto3, _ = _median("import boto3", [], base_env)
    rows.append({"benchmark": "cold import", "metric": "floor: import boto3", "value": round(floor_boto3),
                 "unit": "ms"})
    floor_client, _ = _median("import boto3; boto3.client('dynamodb')", [], base_env)
    rows.append({"benchmark": "cold import", "metric": "floor: boto3 + DynamoDB client", "value": round(floor_client),
                 "unit": "ms"})
    # With a partner event source, so the conditional inbound EventBridge function is measured too.
    stack = Stack(ROOT / "template.yaml", parameters={"StripeEventSourceName": "aws.partner/stripe.com/ed_bench"})
    for spec in stack.functions():
        module, _, _ = spec.handler.rpartition(".")
        env = {**base_env, **spec.environment, "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id}
        paths = [str(spec.code_dir), *(str(p) for p in spec.layer_dirs)]
        ms, loaded = _median(f"import {module}", paths, env)
        rows.append({"benchmark": "cold import", "metric": f"{spec.logical_id} ({', '.join(loaded) or 'stdlib only'})",
                     "value": round(ms), "unit": "ms"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']:<70} {row['value']:>8} {row['unit']}")
