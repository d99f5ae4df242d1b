"""MkDocs hook: the API page (docs/api/index.md) rendered from the OpenAPI
document the stack serves (`GET /v1/openapi.json`), which `make docs` writes
to docs/api/openapi.json from the same code first. Standard library only:
the docs environment has MkDocs, not the billing package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER = "<!-- openapi -->"
METHODS = ("get", "put", "post", "patch", "delete")


def _cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return "`" + schema["$ref"].rsplit("/", 1)[-1] + "`"
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items'))}"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_schema_name(s) for s in schema[key] if s.get("type") != "null")
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return f"`{schema.get('type', 'object')}`"


def render(doc: dict[str, Any]) -> str:
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in sorted(doc.get("paths", {}).items()):
        for method in METHODS:
            if method in item:
                op = item[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    out = [f"Version {doc.get('info', {}).get('version', '')}: {len(doc.get('paths', {}))} paths.", ""]
    for tag in sorted(by_tag):
        out += [f"## {tag}", ""]
        for method, path, op in by_tag[tag]:
            out += [f"### `{method.upper()} {path}`", "", _cell(op.get("summary")), ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters") or []
            if params:
                out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                out += [f"| `{p['name']}` | {p.get('in', '')} | {_schema_name(p.get('schema'))} | "
                        f"{'yes' if p.get('required') else ''} | {_cell(p.get('description'))} |" for p in params]
                out.append("")
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                out += [f"Body: {_schema_name(body)}", ""]
            responses = op.get("responses") or {}
            if responses:
                out += ["| status | description | body |", "|---|---|---|"]
                for status, resp in sorted(responses.items()):
                    schema = (resp.get("content") or {}).get("application/json", {}).get("schema")
                    out.append(f"| {status} | {_cell(resp.get('description'))} | {_schema_name(schema)} |")
                out.append("")
    schemas = doc.get("components", {}).get("schemas", {})
    if schemas:
        out += ["## Schemas", ""]
        for name, schema in sorted(schemas.items()):
            props = schema.get("properties") or {}
            out += [f"### `{name}`", "", _cell(schema.get("description")), ""]
            if props:
                required = set(schema.get("required") or [])
                out += ["| field | type | required | description |", "|---|---|---|---|"]
                out += [f"| `{k}` | {_schema_name(v)} | {'yes' if k in required else ''} | "
                        f"{_cell(v.get('description'))} |" for k, v in props.items()]
                out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    source = Path(config["docs_dir"]) / "api" / "openapi.json"
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: `make docs` or `make docs-build` writes it")
    return markdown.replace(MARKER, render(json.loads(source.read_text())))
