"""``/llms.txt`` and ``/llms-full.txt``, generated from the OpenAPI document so they never drift."""

from __future__ import annotations

import json
from typing import Any

_METHODS = ("get", "post", "put", "patch", "delete")


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, item in spec.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                ops.append((method.upper(), path, item[method]))
    return ops


def _first_line(op: dict[str, Any]) -> str:
    text = (op.get("description") or op.get("summary") or "").strip()
    return text.splitlines()[0] if text else ""


def llms_txt(spec: dict[str, Any], base_url: str) -> str:
    info = spec.get("info", {})
    lines = [
        f"# {info.get('title', 'API')}",
        "",
        f"> {info.get('description', '').strip()}",
        "",
        f"Base URL: {base_url}. Authenticate with `Authorization: Bearer vl_…`.",
        'Errors: non-2xx with `{"error": message, "code": code}`. Lists: `?limit=&cursor=`,',
        'answering `{"data": [...], "has_more": bool, "next_cursor": str|null}`.',
        f"The whole API as OpenAPI: {base_url}/openapi.json; every route in detail: "
        f"{base_url}/llms-full.txt",
        "",
    ]
    by_tag: dict[str, list[str]] = {}
    for method, path, op in _operations(spec):
        tag = (op.get("tags") or ["other"])[0]
        summary = op.get("summary") or ""
        detail = _first_line(op)
        text = f"- `{method} {path}`: {summary}" + (
            f". {detail}" if detail and detail != summary else ""
        )
        by_tag.setdefault(tag, []).append(text)
    for tag, entries in by_tag.items():
        lines += [f"## {tag}", "", *entries, ""]
    return "\n".join(lines)


def _schema_text(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        resolved = spec.get("components", {}).get("schemas", {}).get(name, {})
        return f"{name}: " + json.dumps(_compact(resolved), separators=(",", ":"))
    return json.dumps(_compact(schema), separators=(",", ":"))


def _compact(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "properties" in schema:
        out["properties"] = {
            name: {
                k: v
                for k, v in prop.items()
                if k in ("type", "$ref", "anyOf", "items", "enum", "description", "format")
            }
            for name, prop in schema["properties"].items()
        }
    for key in ("type", "required", "enum", "items", "anyOf"):
        if key in schema:
            out[key] = schema[key]
    return out


def llms_full_txt(spec: dict[str, Any], base_url: str) -> str:
    lines = [llms_txt(spec, base_url), "# Every route", ""]
    for method, path, op in _operations(spec):
        lines.append(f"## {method} {path}")
        lines.append("")
        if op.get("description"):
            lines += [op["description"].strip(), ""]
        for param in op.get("parameters", []):
            schema = param.get("schema", {})
            lines.append(
                f"- {param['in']} `{param['name']}`"
                + (" (required)" if param.get("required") else "")
                + f": {schema.get('type') or _schema_text(schema, spec)}"
                + (f". {param['description']}" if param.get("description") else "")
            )
        body = op.get("requestBody", {}).get("content", {})
        for media, content in body.items():
            lines.append(f"- body ({media}): {_schema_text(content.get('schema', {}), spec)}")
        for status, response in op.get("responses", {}).items():
            content = response.get("content", {}).get("application/json", {})
            schema = _schema_text(content["schema"], spec) if "schema" in content else ""
            lines.append(
                f"- {status} {response.get('description', '')}" + (f": {schema}" if schema else "")
            )
        lines.append("")
    return "\n".join(lines)
