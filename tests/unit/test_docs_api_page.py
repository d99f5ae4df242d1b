"""The documentation's API page (docs/hooks/openapi.py) is rendered from the
OpenAPI document the API serves: every operation and schema appears."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from billing.api.app import openapi_json

ROOT = Path(__file__).resolve().parents[2]


def hook() -> Any:
    spec = importlib.util.spec_from_file_location("docs_openapi_hook", ROOT / "docs" / "hooks" / "openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_operation_and_schema_of_the_served_document_is_on_the_page(tmp_path: Path) -> None:
    doc = json.loads(openapi_json())
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "openapi.json").write_text(json.dumps(doc))
    module = hook()
    page = module.on_page_markdown("# The API\n\n<!-- openapi -->\n", None, {"docs_dir": str(tmp_path)}, None)
    assert "<!-- openapi -->" not in page
    operations = [(m, p) for p, item in doc["paths"].items() for m in ("get", "put", "post", "patch", "delete")
                  if m in item]
    assert len(operations) > 40
    for method, path in operations:
        assert f"### `{method.upper()} {path}`" in page, (method, path)
    for name in doc["components"]["schemas"]:
        assert f"### `{name}`" in page, name
    # Another page passes through untouched.
    assert module.on_page_markdown("# Other\n", None, {"docs_dir": str(tmp_path)}, None) == "# Other\n"
