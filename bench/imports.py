"""Cold import cost of each function, as Lambda pays it on a cold start
(DESIGN.md section 7).

As Lambda pays it means:
- the layer as the build makes it: the layer's own `build-CommonLayer`
  recipe (layers/common/Makefile), run into .aws-sam/bench-imports/. The
  deployed layer holds arm64 wheels; here the same pins are installed for
  this machine's platform (UV_PLATFORM), and the recipe's own steps do the
  rest (its bytecode step included, when it has one). Each function is built
  the way the template says (`BuildMethod: makefile`, or copied as SAM's
  python_pip workflow does for a folder without requirements);
- a read-only tree: PYTHONDONTWRITEBYTECODE=1, so what is not precompiled is
  compiled again by every cold start, as on Lambda's read-only /opt and
  /var/task; `-S`, so nothing comes from the dev venv: only the function's
  folder and the layer are on sys.path, in Lambda's order;
- the template's environment (parameters at their defaults) plus the
  variables Lambda sets (LAMBDA_TASK_ROOT, AWS_EXECUTION_ENV...), so tracing
  is as deployed.

Each sample is a fresh interpreter; a figure is the median of RUNS samples,
taken round-robin so that a busy machine slows every variant alike, of the
CPU time the import takes (its wall time beside it: on a busy machine it
measures the machine as much as the import), and a ratio is the median of
each round's ratio. The floor, `import boto3; boto3.client("dynamodb")` from the same layer tree in
the same run, is what any Python function that talks to DynamoDB pays; each
function is printed as a ratio to it (DESIGN.md section 7's targets), with
its peak memory (ru_maxrss of the sample). Beside each function, in the
same run: the same layer with its bytecode removed (the gain stays
visible), the function with DetailedTracing on (what the X-Ray SDK costs),
and for the API every route group loaded (what its first requests can add:
the groups load on first use).

`python -m bench.imports --profile WebhookFunction` prints where one
function's import time goes (`python -X importtime`, same tree and
environment).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "10"))
BUILD = ROOT / ".aws-sam" / "bench-imports"
FLOOR_CODE = "import boto3; boto3.client('dynamodb')"
HEAVY = ("aws_xray_sdk", "boto3", "botocore", "pydantic", "pynamodb", "requests", "stripe")
# DESIGN.md section 7: each function's import against the floor.
TARGETS = {"WebhookFunction": 1.0, "WebhookProcessorFunction": 1.2, "MeterReporterFunction": 1.2,
           "MeterSweeperFunction": 1.2, "ApiFunction": 1.5,
           # The sync functions: streams (backfill, publisher), a schedule (the poll), an EventBridge target.
           "StripeEventsFunction": 1.2, "BackfillFunction": 1.2, "EventsPollFunction": 1.2,
           "EventPublisherFunction": 1.2,
           # Usage reconciliation (DESIGN.md section 10): a schedule and its runs' stream.
           "UsageReconcilerFunction": 1.2,
           # DESIGN.md section 11: its own function, so the API's cold start does not grow.
           "McpFunction": 1.5}

_PROBE = """
import json, resource, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["paths"]
started, cpu_started = time.perf_counter(), time.process_time()
exec(spec["code"], {})
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ms": cpu * 1000, "wall_ms": elapsed * 1000, "peak_kib": peak_kib,
                  "loaded": sorted(m for m in spec["heavy"] if m in sys.modules)}))
"""


@dataclass(frozen=True)
class Variant:
    """One thing to import, with the tree and environment it is imported from."""

    name: str
    code: str
    paths: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def _host_platforms() -> tuple[str, str]:
    """The platform tags the layer recipe installs wheels for, this machine's (uv, pip)."""
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "aarch64", "arm64"):
        raise RuntimeError(f"bench.imports installs manylinux wheels: run it on Linux (not {sys.platform} {machine})")
    arch = "x86_64" if machine == "x86_64" else "aarch64"
    return f"{arch}-manylinux2014", f"manylinux2014_{arch}"


def _digest(paths: list[Path], extra: str) -> str:
    """A key for a build: the content of every input file, and `extra`."""
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _make(target: str, cwd: Path, artifacts: Path, makefile: Path | None = None, **variables: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        env["UV"] = str(uv)
    # The recipes want a python3.13 on PATH, as `make build` gives SAM.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    args = ["make", "--no-print-directory", *(["--makefile", str(makefile)] if makefile else []), target,
            f"ARTIFACTS_DIR={artifacts}", *(f"{k}={v}" for k, v in variables.items())]
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if out.returncode != 0:
        raise RuntimeError(f"make {target} failed:\n{out.stdout}\n{out.stderr}")


def _build(name: str, inputs: list[Path], build: Any) -> Path:
    """`build(artifacts)` into a fresh folder, unless one built from the same inputs exists."""
    key = _digest(inputs, f"{name} {platform.machine()} {sys.version_info[:2]}")
    done = BUILD / f"{name}-{key}"
    if (done / ".complete").exists():
        return done
    for stale in BUILD.glob(f"{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    done.mkdir(parents=True)
    build(done)
    (done / ".complete").touch()
    return done


def build_layer(content_uri: Path) -> Path:
    """The layer's python/ as its Makefile builds it, with wheels for this machine."""
    uv_platform, pip_platform = _host_platforms()

    def build(artifacts: Path) -> None:
        # As sam build does: a scratch copy of the layer's folder, its target run there.
        scratch = artifacts / ".source"
        shutil.copytree(content_uri, scratch, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _make("build-CommonLayer", scratch, artifacts, UV_PLATFORM=uv_platform, PIP_PLATFORM=pip_platform)
        shutil.rmtree(scratch)

    return _build("layer", list(content_uri.rglob("*")), build) / "python"


def build_function(logical_id: str, code_uri: Path, metadata: dict[str, Any]) -> Path:
    """A function's folder as `sam build` makes it (its makefile target, else a copy)."""
    def build(artifacts: Path) -> None:
        if metadata.get("BuildMethod") == "makefile":
            context = ROOT / str(metadata.get("ContextPath", code_uri.relative_to(ROOT)))
            scratch = artifacts.parent / f".source-{logical_id}"
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.copytree(code_uri, scratch, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            # A function's own wheels (functions/Makefile) for this machine, as the layer's.
            _make(f"build-{logical_id}", scratch, artifacts, makefile=context / "Makefile",
                  UV_PLATFORM=_host_platforms()[0])
            shutil.rmtree(scratch)
        else:
            shutil.copytree(code_uri, artifacts, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    inputs = [*code_uri.rglob("*"), *(ROOT / "functions").glob("*.mk"), ROOT / "functions" / "Makefile",
              ROOT / "layers" / "common" / "bytecode.mk"]
    return _build(logical_id, inputs, build)


def without_bytecode(tree: Path) -> Path:
    """`tree` without any .pyc: what every cold start compiles when nothing is precompiled."""
    bare = tree.parent.with_name(tree.parent.name + "-nobytecode") / tree.name
    marker = bare.parent / ".complete"
    if not marker.exists():
        shutil.rmtree(bare.parent, ignore_errors=True)
        # Hard links: the copy costs no space; removing a link leaves the original.
        shutil.copytree(tree, bare, copy_function=os.link,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        marker.touch()
    return bare


def _has_bytecode(tree: Path) -> bool:
    return any(tree.rglob("*.pyc"))


def lambda_environment(logical_id: str, task_root: Path, template_env: dict[str, str], memory: int,
                       handler: str) -> dict[str, str]:
    """What Lambda sets for a python3.13 function, then the template's variables."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{logical_id}",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": handler,
        **template_env,
    }


def _sample(variant: Variant) -> dict[str, Any]:
    spec = json.dumps({"code": variant.code, "paths": list(variant.paths), "heavy": HEAVY})
    out = subprocess.run([sys.executable, "-S", "-c", _PROBE, spec], capture_output=True,  # noqa: S603
                         text=True, check=False, cwd=BUILD, env=dict(variant.env))
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{variant.name}: `{variant.code}` failed: {last}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(variants: list[Variant], runs: int = RUNS) -> dict[str, dict[str, Any]]:
    """Each variant's median import time (CPU, and wall), peak memory and, when the
    first variant is the floor, its median ratio to the floor of the same round.

    Sampled round-robin, so that a busy machine slows every variant alike; CPU
    time, since an import is CPU work and the CPU time of a sample hardly
    depends on what else the machine runs (its wall time does)."""
    samples: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for _ in range(runs):
        for variant in variants:
            samples[variant.name].append(_sample(variant))
    floor = samples[variants[0].name]
    return {name: {"ms": statistics.median(s["ms"] for s in got),
                   "wall_ms": statistics.median(s["wall_ms"] for s in got),
                   "ratio": statistics.median(s["ms"] / f["ms"] for s, f in zip(got, floor, strict=True)),
                   "peak_mib": statistics.median(s["peak_kib"] for s in got) / 1024,
                   "loaded": got[-1]["loaded"]} for name, got in samples.items()}


@dataclass(frozen=True)
class Function:
    logical_id: str
    module: str
    built: Path
    source: Path
    env: dict[str, str]


def functions() -> tuple[Path, list[Function]]:
    """The built layer and every function of template.yaml, built as it says."""
    sys.path.insert(0, str(ROOT))
    from devstack.template import Stack

    # With a partner event source, so the conditional inbound EventBridge function is measured too.
    stack = Stack(ROOT / "template.yaml", parameters={"StripeEventSourceName": "aws.partner/stripe.com/ed_bench"})
    specs = stack.functions()
    layer_dirs = {d for spec in specs for d in spec.layer_dirs}
    if len(layer_dirs) != 1:
        raise RuntimeError(f"bench.imports expects every function on one layer, found {sorted(layer_dirs)}")
    layer = build_layer(layer_dirs.pop())
    out = []
    for spec in specs:
        module, _, _ = spec.handler.rpartition(".")
        metadata = stack.resources[spec.logical_id].get("Metadata") or {}
        built = build_function(spec.logical_id, spec.code_dir, metadata)
        env = lambda_environment(spec.logical_id, built, spec.environment, spec.memory, spec.handler)
        out.append(Function(spec.logical_id, module, built, spec.code_dir, env))
    return layer, out


# What a function's later requests can add to its import, measured beside it:
# the API's route groups load on first use (billing.api.lazy).
LATER = {"ApiFunction": ("with every route group loaded", "app.app.load()")}


def _row(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": "cold import", "metric": metric, "value": value, "unit": unit}


def run() -> list[dict[str, Any]]:
    layer, fns = functions()
    bare_layer = without_bytecode(layer)
    compiled = _has_bytecode(layer)
    floor_env = lambda_environment("Floor", BUILD, {}, 512, "app.handler")
    variants = [Variant("floor", FLOOR_CODE, (str(layer),), tuple(floor_env.items()))]
    for fn in fns:
        code, paths, env = f"import {fn.module}", (str(fn.built), str(layer)), tuple(fn.env.items())
        variants.append(Variant(fn.logical_id, code, paths, env))
        if compiled:
            # A function with wheels of its own (functions/Makefile): its built folder, bare.
            source = without_bytecode(fn.built) if (fn.source / "requirements.txt").exists() else fn.source
            variants.append(Variant(f"{fn.logical_id} without bytecode", code, (str(source), str(bare_layer)),
                                    env))
        if "DETAILED_TRACING" in fn.env:
            variants.append(Variant(f"{fn.logical_id} with DetailedTracing", code, paths,
                                    tuple({**fn.env, "DETAILED_TRACING": "true"}.items())))
        if fn.logical_id in LATER:
            what, later = LATER[fn.logical_id]
            variants.append(Variant(f"{fn.logical_id} {what}", f"{code}; {later}", paths, env))
    results = measure(variants)
    floor = results["floor"]
    rows = [_row(f"floor: {FLOOR_CODE} (layer {'with' if compiled else 'without'} bytecode)", round(floor["ms"]),
                 f"ms CPU (wall {floor['wall_ms']:.0f} ms)"),
            _row("floor: peak memory", round(floor["peak_mib"]), "MiB")]
    for fn in fns:
        got = results[fn.logical_id]
        target = TARGETS.get(fn.logical_id)
        verdict = "" if target is None else f" (target {target:.1f}x: {'met' if got['ratio'] <= target else 'MISSED'})"
        rows.append(_row(f"{fn.logical_id} ({', '.join(got['loaded'])})", round(got["ms"]),
                         f"ms CPU (wall {got['wall_ms']:.0f} ms)"))
        rows.append(_row(f"{fn.logical_id} / floor", round(got["ratio"], 2), f"x{verdict}"))
        rows.append(_row(f"{fn.logical_id} peak memory", round(got["peak_mib"]), "MiB"))
        for name, other in results.items():
            if name.startswith(f"{fn.logical_id} "):
                rows.append(_row(name, round(other["ms"]),
                                 f"ms CPU ({other['ratio']:.2f}x the floor, {other['peak_mib']:.0f} MiB)"))
    return rows


# -- where the time goes ---------------------------------------------------------------

_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def profile(logical_id: str, top: int = 15) -> list[str]:
    """`python -X importtime` of one function's import, summarised: import time
    (each module's own) by top-level package, and the costliest modules."""
    layer, fns = functions()
    fn = next((f for f in fns if f.logical_id == logical_id), None)
    if fn is None:
        raise SystemExit(f"no function {logical_id} in template.yaml ({', '.join(f.logical_id for f in fns)})")
    spec = json.dumps({"code": f"import {fn.module}", "paths": [str(fn.built), str(layer)], "heavy": HEAVY})
    out = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", _PROBE, spec],  # noqa: S603
                         capture_output=True, text=True, check=True, cwd=BUILD, env=fn.env)
    packages: dict[str, int] = {}
    own: list[tuple[int, str]] = []
    for line in out.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            self_us, name = int(match[1]), match[4]
            own.append((self_us, name))
            packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + self_us
    total = sum(packages.values())
    lines = [f"{logical_id}: {total / 1000:.0f} ms of imports (-X importtime, one sample, with its overhead)",
             "by top-level package (modules' own time):"]
    lines += [f"  {us / 1000:8.1f} ms  {us / total:5.1%}  {name}"
              for name, us in sorted(packages.items(), key=lambda kv: -kv[1])[:top]]
    lines.append("costliest modules (own time):")
    lines += [f"  {us / 1000:8.1f} ms  {name}" for us, name in sorted(own, reverse=True)[:top]]
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["--profile"] and len(sys.argv) == 3:
        print("\n".join(profile(sys.argv[2])))
    else:
        for row in run():
            print(f"{row['metric']:<78} {row['value']:>8} {row['unit']}")
