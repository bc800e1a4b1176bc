"""JSON Schema as data: the builders route contracts are written with, and the checker that holds
requests to them, so that what the OpenAPI document promises is what the server enforces.

The dialect is OpenAPI 3.0's (``nullable``; ``format: byte`` and ``binary``). The checker knows the
keywords the builders emit and no others: type, nullable, enum, minimum/maximum, minLength/maxLength,
pattern, items/minItems/maxItems, properties/required/additionalProperties, anyOf, allOf, not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = (
    "Schema", "string", "integer", "number", "boolean", "array", "obj", "nullable", "any_of", "ref",
    "violation", "from_text",
)

Schema = dict[str, Any]


def string(*, min_length: int | None = None, max_length: int | None = None, pattern: str | None = None,
           enum: Sequence[str] | None = None, fmt: str | None = None, description: str = "") -> Schema:
    out: Schema = {"type": "string"}
    for key, value in (("minLength", min_length), ("maxLength", max_length), ("pattern", pattern),
                       ("format", fmt), ("description", description or None)):
        if value is not None:
            out[key] = value
    if enum is not None:
        out["enum"] = list(enum)
    return out


def integer(lo: int | None = None, hi: int | None = None, *, description: str = "") -> Schema:
    return _bounded("integer", lo, hi, description)


def number(lo: float | None = None, hi: float | None = None, *, description: str = "") -> Schema:
    return _bounded("number", lo, hi, description)


def _bounded(kind: str, lo: float | None, hi: float | None, description: str) -> Schema:
    out: Schema = {"type": kind}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    if description:
        out["description"] = description
    return out


def boolean(*, description: str = "") -> Schema:
    return {"type": "boolean", "description": description} if description else {"type": "boolean"}


def array(items: Schema, *, min_items: int | None = None, max_items: int | None = None,
          description: str = "") -> Schema:
    out: Schema = {"type": "array", "items": items}
    if description:
        out["description"] = description
    if min_items is not None:
        out["minItems"] = min_items
    if max_items is not None:
        out["maxItems"] = max_items
    return out


def obj(properties: Mapping[str, Schema], required: Sequence[str] = (), *, extra: bool | Schema = True,
        description: str = "") -> Schema:
    """An object; ``extra``: whether (or as what) properties not named here may appear."""
    out: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        out["required"] = list(required)
    if extra is not True:
        out["additionalProperties"] = extra
    if description:
        out["description"] = description
    return out


def nullable(schema: Schema) -> Schema:
    return schema | {"nullable": True}


def any_of(*schemas: Schema) -> Schema:
    return {"anyOf": list(schemas)}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _is_type(value: Any, kind: str) -> bool:
    # bool is an int in Python, never a number in JSON.
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


def _matches(pattern: str, value: str) -> bool:
    # An anchored pattern is matched whole: Python's "$" also matches before a final newline, ECMA's
    # (what the document's readers use) does not.
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
        return re.fullmatch(pattern[1:-1], value) is not None
    return re.search(pattern, value) is not None


def violation(value: Any, schema: Schema | bool, where: str) -> str | None:
    """Why ``value`` breaks ``schema`` (naming ``where`` it is), or None when it conforms."""
    if isinstance(schema, bool):
        return None if schema else f"{where} may not be given here"
    if value is None and schema.get("nullable"):
        return None
    if "anyOf" in schema:
        problems = [violation(value, option, where) for option in schema["anyOf"]]
        if all(problems):
            return schema.get("description") or problems[-1]
    for part in schema.get("allOf", ()):
        if problem := violation(value, part, where):
            return problem
    if "not" in schema and violation(value, schema["not"], where) is None:
        return schema["not"].get("description") or f"{where or 'the body'} matches what it may not"
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return f"{where} must be {'an' if kind[0] in 'aeio' else 'a'} {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        return _string_violation(value, schema, where)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be between {schema.get('minimum', '-inf')} and {schema.get('maximum', 'inf')}"
    if isinstance(value, list):
        return _array_violation(value, schema, where)
    if isinstance(value, dict):
        return _object_violation(value, schema, where)
    return None


def _string_violation(value: str, schema: Schema, where: str) -> str | None:
    if len(value) < schema.get("minLength", 0):
        return f"{where} must be at least {schema['minLength']} characters"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{where} must be at most {schema['maxLength']} characters"
    if "pattern" in schema and not _matches(schema["pattern"], value):
        # A pattern's description says in words what it matches.
        return f"{where} must be {schema['description']}" if "description" in schema else \
            f"{where} must match {schema['pattern']}"
    return None


def _array_violation(value: list[Any], schema: Schema, where: str) -> str | None:
    if len(value) < schema.get("minItems", 0):
        return f"{where} must hold at least {schema['minItems']} items"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{where} must hold at most {schema['maxItems']} items"
    items = schema.get("items")
    if items is not None:
        for position, item in enumerate(value):
            if problem := violation(item, items, f"{where}[{position}]"):
                return problem
    return None


def _object_violation(value: dict[str, Any], schema: Schema, where: str) -> str | None:
    properties: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            return f"{where}.{name} is required" if where else f"{name} is required"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        inner = f"{where}.{name}" if where else name
        if name in properties:
            problem = violation(item, properties[name], inner)
        elif extra is False:
            problem = f"{inner} is not a known property"
        else:
            problem = violation(item, extra, inner) if isinstance(extra, dict) else None
        if problem:
            return problem
    return None


# [0-9], not \d: Python's \d (and int(), float()) also read other scripts' digits; JSON does not.
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def from_text(text: str, schema: Schema) -> Any:
    """A query or form value (always text) as the JSON value ``schema`` describes, when it reads as one;
    else the text itself, for ``violation`` to name what is wrong with it."""
    kinds = [option.get("type") for option in schema.get("anyOf", [schema])]
    if len(text) > 64:  # no number is that long (and int() refuses over 4300 digits)
        return text
    if "integer" in kinds and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in kinds and _NUMBER.fullmatch(text):
        return float(text)
    if "boolean" in kinds and text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    return text
