"""Turn the Kubernetes OpenAPI v2 spec (``swagger.json``) into kubeconform's JSON schemas, offline.

kubeconform normally downloads standalone schemas from GitHub. Here the spec comes from the
``k8s.io/kubernetes`` Go module (``api/openapi-spec/swagger.json``, fetched through the Go module
proxy) and this script writes one standalone, strict schema per kind, named the way kubeconform's
``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template expects (``deployment-apps-v1.json``,
``service-v1.json``, ``networkpolicy-networking-v1.json``).

Strict means ``additionalProperties: false`` on every object that lists its properties, so a
misspelt field is an error rather than silently ignored (as ``kubectl apply --validate=strict``).

Usage: ``python k8s_schemas.py SWAGGER_JSON OUT_DIR``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REF_PREFIX = "#/definitions/"
# Types the API server accepts in two shapes but the spec names with a string format only.
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def _convert(
    schema: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]
) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF_PREFIX)
        if name in stack:  # a recursive type (JSONSchemaProps): accept anything below
            return {}
        return _convert(defs[name], defs, (*stack, name))
    if schema.get("format") == "int-or-string":
        return dict(INT_OR_STRING)
    if stack and stack[-1].endswith("api.resource.Quantity"):
        return dict(QUANTITY)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("description", "format"):
            continue
        if key == "properties":
            out[key] = {p: _convert(s, defs, stack) for p, s in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs, stack)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [_convert(s, defs, stack) for s in value]
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def file_name(gvk: dict[str, str]) -> str:
    """kubeconform's name for a kind: ``<kind>[-<first part of group>]-<version>.json``."""
    group = gvk["group"].split(".")[0] if gvk["group"] else ""
    parts = [gvk["kind"].lower(), *([group.lower()] if group else []), gvk["version"].lower()]
    return "-".join(parts) + ".json"


def convert(swagger: dict[str, Any], out_dir: Path) -> int:
    """Write a schema for every kind of the spec; the number written."""
    defs: dict[str, Any] = swagger["definitions"]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            standalone = _convert(schema, defs, (name,))
            props = standalone.get("properties", {})
            # A manifest must say what it is; the spec marks neither field required.
            if "apiVersion" in props and "kind" in props:
                api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                props["apiVersion"] = {"type": "string", "enum": [api]}
                props["kind"] = {"type": "string", "enum": [gvk["kind"]]}
                standalone["required"] = sorted(
                    {*standalone.get("required", ()), "apiVersion", "kind"}
                )
            standalone["$schema"] = "http://json-schema.org/draft-07/schema#"
            (out_dir / file_name(gvk)).write_text(json.dumps(standalone, separators=(",", ":")))
            written += 1
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(__doc__ or "")
        return 2
    swagger = json.loads(Path(argv[0]).read_text())
    count = convert(swagger, Path(argv[1]))
    sys.stdout.write(f"wrote {count} schemas to {argv[1]}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
