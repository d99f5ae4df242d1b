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
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
