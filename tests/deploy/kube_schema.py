"""A CRD's openAPIV3Schema as JSON Schema, so that jsonschema checks a custom resource offline much as
the Kubernetes API server would.

A structural schema says more than its JSON Schema keywords do; what the extensions mean, here:

- Unknown fields are refused (additionalProperties: false wherever properties are listed), as kubectl
  apply does by default (--validate=strict): otherwise the API server drops them, silently, and a
  misspelt field is simply lost. x-kubernetes-preserve-unknown-fields keeps them, as there.
- x-kubernetes-list-type: map lists may not hold two items with the same x-kubernetes-list-map-keys
  (a key left out counts as its default: a port's protocol is TCP); set lists, no two equal items.
- format int32 and int64: integers in range. Other formats are not checked (as with quantities,
  whose pattern the schema gives anyway).
- x-kubernetes-int-or-string comes with its anyOf [integer, string]; x-kubernetes-map-type says how
  apply merges a map, not what it may hold: nothing to add for either.

Not checked: metadata (a CRD's schema says only `type: object`; the API server checks ObjectMeta
itself), defaulting, and admission webhooks. Any other extension or keyword of Kubernetes' own
(CEL's x-kubernetes-validations, nullable) stops the conversion, rather than being skipped unseen.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators

# Those the docstring above says what to do with.
KNOWN = {
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string",
    "x-kubernetes-map-type",
}
_RANGES = {"int32": 2**31, "int64": 2**63}


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a structural schema with the rules above written in, for a Draft 4 validator (the
    dialect OpenAPI v3.0's schemas are written in)."""
    unknown = {key for key in schema if key.startswith("x-kubernetes-") or key == "nullable"} - KNOWN
    if unknown:
        raise ValueError(f"schema keyword(s) this conversion does not handle: {sorted(unknown)}")
    converted = dict(schema)  # default and enum are values, not schemas: kept as they are
    if "properties" in schema:
        converted["properties"] = {name: to_json_schema(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            converted["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            converted[key] = to_json_schema(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            converted[key] = [to_json_schema(sub) for sub in schema[key]]
    if schema.get("x-kubernetes-list-type") == "set":
        converted["uniqueItems"] = True
    return converted


def _unique_map_keys(validator, keys: list[str], instance: Any, schema: dict) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "array"):
        return
    fields = schema.get("items", {}).get("properties", {})
    seen: set[str] = set()
    for item in instance:
        if isinstance(item, dict):
            key = json.dumps({name: item.get(name, fields.get(name, {}).get("default")) for name in keys})
            if key in seen:
                yield ValidationError(f"two items with the same {'/'.join(keys)}: {key}")
            seen.add(key)


_FORMATS = FormatChecker(formats=())
for _name, _bound in _RANGES.items():
    _FORMATS.checks(_name)(lambda value, bound=_bound: not isinstance(value, int) or -bound <= value < bound)

KubernetesValidator = validators.extend(Draft4Validator, {"x-kubernetes-list-map-keys": _unique_map_keys})


def load(path: Path) -> Any:
    """A validator for a gzipped openAPIV3Schema (as tests/deploy/kserve_crds keeps them)."""
    schema = to_json_schema(json.loads(gzip.decompress(path.read_bytes())))
    KubernetesValidator.check_schema(schema)
    return KubernetesValidator(schema, format_checker=_FORMATS)


def problems(validator: Any, document: dict) -> list[str]:
    """Each way the document breaks the schema, as PATH: MESSAGE; none when it is valid."""
    errors = sorted(validator.iter_errors(document), key=lambda error: list(map(str, error.absolute_path)))
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]
