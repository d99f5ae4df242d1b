"""What ships in the deployed layer: the billing package and its wheels, and
none of the development code (DESIGN.md section 5: the Fake processor, its
RPC server and client, the scripted crash live in devstack/ and never reach
Lambda).

The layer is built the way `sam build` builds it: CommonLayer has
`BuildMethod: makefile`, so SAM copies layers/common to a scratch directory
and runs its Makefile's `build-CommonLayer` target with ARTIFACTS_DIR set.
This test does the same, into a temporary directory, and inspects the
`python/billing/` that Lambda would put on sys.path.
"""

from __future__ import annotations

import ast
import importlib.util
import marshal
import os
import py_compile
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import load_template

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
LAYER_SOURCE = ROOT / "layers" / "common"

FAKE_PROCESSOR_CLASS = re.compile(r"\w*Fake\w*Processor\w*")


def _make_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # The Makefile installs the pinned wheels with $(UV), else uv on PATH;
    # the dev environment has one beside this interpreter.
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        env["UV"] = str(uv)
    # Bytecode is compiled by a Python 3.13 (layers/common/bytecode.mk): this one.
    env["LAMBDA_PYTHON"] = sys.executable
    return env


@pytest.fixture(scope="module")
def built_billing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """python/billing/ of a layer built by the layer's own Makefile target."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    scratch = tmp_path_factory.mktemp("layer-source") / "CommonLayer"
    shutil.copytree(LAYER_SOURCE, scratch, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    artifacts = tmp_path_factory.mktemp("layer-artifacts")
    result = subprocess.run(  # noqa: S603 - make and the layer's own Makefile
        ["make", "--no-print-directory", "build-CommonLayer", f"ARTIFACTS_DIR={artifacts}"],  # noqa: S607
        cwd=scratch, env=_make_env(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"make build-CommonLayer failed:\n{result.stdout}\n{result.stderr}"
    billing = artifacts / "python" / "billing"
    assert billing.is_dir(), f"the build left no python/billing in {artifacts}"
    yield billing
    shutil.rmtree(artifacts, ignore_errors=True)


def _modules(billing: Path) -> Iterator[tuple[Path, str, ast.Module]]:
    for path in sorted(billing.rglob("*.py")):
        text = path.read_text()
        yield path, text, ast.parse(text, filename=str(path))


def _imported(tree: ast.Module) -> Iterator[str]:
    """Every module name an import statement names, and `from m import n` as m.n too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_build_ships_the_billing_package_and_the_stripe_processor(built_billing: Path) -> None:
    # What the other checks read must be there, or they would pass on nothing.
    shipped = {p.relative_to(built_billing).as_posix() for p in built_billing.rglob("*.py")}
    source = {p.relative_to(LAYER_SOURCE / "billing").as_posix() for p in (LAYER_SOURCE / "billing").rglob("*.py")}
    assert shipped == source
    assert {"processor/__init__.py", "processor/base.py", "processor/stripe_processor.py"} <= shipped
    assert not (built_billing.parent / "devstack").exists()


def test_no_file_of_the_fake_its_rpc_or_its_client_ships(built_billing: Path) -> None:
    named = [p.relative_to(built_billing).as_posix() for p in built_billing.rglob("*")
             if "fake" in p.stem.lower() or p.stem.lower() in ("rpc", "remote")]
    assert named == []


def test_no_shipped_module_defines_a_fake_processor(built_billing: Path) -> None:
    found = [f"{path.relative_to(built_billing)}: class {node.name}"
             for path, _, tree in _modules(built_billing)
             for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and FAKE_PROCESSOR_CLASS.fullmatch(node.name)]
    assert found == []


def test_no_shipped_module_can_exit_the_process_or_serve_http(built_billing: Path) -> None:
    found = []
    for path, text, tree in _modules(built_billing):
        where = path.relative_to(built_billing)
        if "os._exit(" in text:
            found.append(f"{where}: os._exit(")
        if "http.server" in text:
            found.append(f"{where}: http.server")
        exits = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "_exit"]
        found += [f"{where}:{n.lineno}: ._exit" for n in exits]
        found += [f"{where}: imports {name}" for name in _imported(tree)
                  if name in ("os._exit", "http.server") or name.startswith("http.server.")]
    assert found == []


def test_no_shipped_module_imports_the_local_stack(built_billing: Path) -> None:
    found = [f"{path.relative_to(built_billing)}: imports {name}"
             for path, _, tree in _modules(built_billing)
             for name in _imported(tree)
             if name == "devstack" or name.startswith("devstack.")]
    assert found == []


# -- bytecode (issue 11) ------------------------------------------------------------------
# Lambda mounts the layer (/opt) and the function (/var/task) read-only: what
# ships without bytecode is compiled again by every cold start. The builds
# compile every module for CPython 3.13 with unchecked hash-based .pyc files
# (layers/common/bytecode.mk), valid whatever timestamps the zip gives them.

FUNCTIONS_SOURCE = ROOT / "functions"
LAYER_MOUNT = "/opt/python"
TASK_ROOT = "/var/task"
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source never checked


def bytecode_problems(root: Path, mount: str) -> list[str]:
    """Every module under `root` without a .pyc that CPython 3.13 loads whatever
    the timestamps (unchecked hash of the shipped source, paths as Lambda mounts
    them), and every .pyc that belongs to no shipped source."""
    problems = []
    expected = set()
    for source in sorted(root.rglob("*.py")):
        where = source.relative_to(root).as_posix()
        cached = Path(importlib.util.cache_from_source(str(source)))
        expected.add(cached)
        if not cached.is_file():
            problems.append(f"{where}: no {cached.name}")
            continue
        data = cached.read_bytes()
        if data[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(f"{where}: bytecode of another Python")
        elif int.from_bytes(data[4:8], "little") != UNCHECKED_HASH:
            problems.append(f"{where}: not an unchecked hash-based .pyc")
        elif data[8:16] != importlib.util.source_hash(source.read_bytes()):
            problems.append(f"{where}: bytecode of another source")
        else:
            # Our own build's output, read to see the path it was compiled for.
            compiled_as = marshal.loads(data[16:]).co_filename  # noqa: S302
            if compiled_as != f"{mount}/{where}":
                problems.append(f"{where}: compiled as {compiled_as}")
    problems += [f"{p.relative_to(root).as_posix()}: belongs to no source"
                 for p in sorted(root.rglob("*.pyc")) if p not in expected]
    return problems


def test_the_checks_run_on_cpython_313() -> None:
    # MAGIC_NUMBER is the running interpreter's: it must be the Lambda runtime's.
    assert sys.version_info[:2] == (3, 13)


def test_every_module_of_the_layer_ships_its_bytecode(built_billing: Path) -> None:
    python = built_billing.parent
    assert len(list(python.rglob("*.py"))) > 1000  # the wheels are there, not only billing/
    assert bytecode_problems(python, LAYER_MOUNT) == []


def test_the_bytecode_check_finds_what_is_wrong(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in ("good", "missing", "timestamped", "stale", "elsewhere"):
        (pkg / f"{name}.py").write_text(f"NAME = {name!r}\n")
    unchecked = py_compile.PycInvalidationMode.UNCHECKED_HASH
    py_compile.compile(str(pkg / "good.py"), dfile=f"{LAYER_MOUNT}/pkg/good.py", invalidation_mode=unchecked)
    py_compile.compile(str(pkg / "timestamped.py"), dfile=f"{LAYER_MOUNT}/pkg/timestamped.py",
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    py_compile.compile(str(pkg / "stale.py"), dfile=f"{LAYER_MOUNT}/pkg/stale.py", invalidation_mode=unchecked)
    (pkg / "stale.py").write_text("NAME = 'changed since'\n")
    py_compile.compile(str(pkg / "elsewhere.py"), invalidation_mode=unchecked)
    (pkg / "__pycache__" / "gone.cpython-313.pyc").write_bytes(b"")
    assert bytecode_problems(tmp_path, LAYER_MOUNT) == [
        "pkg/elsewhere.py: compiled as " + str(pkg / "elsewhere.py"),
        "pkg/missing.py: no missing.cpython-313.pyc",
        "pkg/stale.py: bytecode of another source",
        "pkg/timestamped.py: not an unchecked hash-based .pyc",
        "pkg/__pycache__/gone.cpython-313.pyc: belongs to no source",
    ]


def _import_from(tree: Path, module: str) -> subprocess.CompletedProcess[str]:
    """`import module` from `tree` alone, read-only (as on Lambda: nothing written, nothing from a venv)."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); import {module}"
    return subprocess.run([sys.executable, "-S", "-B", "-c", code],  # noqa: S603 - this interpreter
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_bytecode_is_what_python_runs_whatever_the_timestamps(built_billing: Path, tmp_path: Path) -> None:
    # A zip may give every file any timestamp (1980-01-01, the build's clock):
    # Python must still run the shipped bytecode and never compile the source.
    # Proof: a source that would fail if compiled is never compiled.
    shipped = tmp_path / "shipped"
    shutil.copytree(built_billing, shipped / "billing")
    (shipped / "billing" / "core" / "clock.py").write_text("raise ImportError('the source was compiled')\n")
    zip_epoch = 315532800  # 1980-01-01, the earliest time a zip stores
    for path in shipped.rglob("*"):
        os.utime(path, (zip_epoch, zip_epoch))
    assert _import_from(shipped, "billing.core.clock").returncode == 0
    # Without its bytecode the same tree compiles the source: the proof can fail.
    for cache in list(shipped.rglob("__pycache__")):
        shutil.rmtree(cache)
    assert "the source was compiled" in _import_from(shipped, "billing.core.clock").stderr


@pytest.fixture(scope="module")
def built_functions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each function's folder built as sam build builds it: its CodeUri copied to
    a scratch directory, functions/Makefile's `build-<LogicalId>` run there."""
    template = load_template(ROOT / "template.yaml")
    built = {}
    for lid, res in template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        scratch = tmp_path_factory.mktemp("function-source") / lid
        shutil.copytree(ROOT / res["Properties"]["CodeUri"], scratch,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        artifacts = tmp_path_factory.mktemp("function-artifacts")
        result = subprocess.run(  # noqa: S603 - make and the functions' own Makefile
            ["make", "--no-print-directory", "--makefile", str(FUNCTIONS_SOURCE / "Makefile"),  # noqa: S607
             f"build-{lid}", f"ARTIFACTS_DIR={artifacts}"],
            cwd=scratch, env=_make_env(), capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"make build-{lid} failed:\n{result.stdout}\n{result.stderr}"
        built[lid] = artifacts
    return built


def test_every_function_ships_its_handler_and_its_bytecode(built_functions: dict[str, Path]) -> None:
    assert len(built_functions) >= 5
    for lid, folder in built_functions.items():
        assert (folder / "app.py").is_file(), lid
        assert bytecode_problems(folder, TASK_ROOT) == [], lid


def build_method_problems(template: dict[str, Any]) -> list[str]:
    """Functions sam build would not compile: each must build with functions/Makefile."""
    return [f"{lid}: Metadata must be BuildMethod: makefile, ContextPath: functions"
            for lid, res in template.get("Resources", {}).items()
            if res.get("Type") == "AWS::Serverless::Function"
            and {k: (res.get("Metadata") or {}).get(k) for k in ("BuildMethod", "ContextPath")}
            != {"BuildMethod": "makefile", "ContextPath": "functions"}]


def test_every_function_is_built_by_the_functions_makefile() -> None:
    assert build_method_problems(load_template(ROOT / "template.yaml")) == []


def test_the_build_method_check_finds_a_function_sam_would_build_without_bytecode() -> None:
    function = {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "functions/x/"}}
    template = {"Resources": {
        "Plain": function,
        "OtherMakefile": {**function, "Metadata": {"BuildMethod": "makefile"}},
        "Good": {**function, "Metadata": {"BuildMethod": "makefile", "ContextPath": "functions"}},
    }}
    assert build_method_problems(template) == [
        "Plain: Metadata must be BuildMethod: makefile, ContextPath: functions",
        "OtherMakefile: Metadata must be BuildMethod: makefile, ContextPath: functions",
    ]
