"""A compiled fast path for the JSON Schema subset Tally's event schemas use.

``jsonschema`` takes ~280 µs per event for these schemas; the hot path needs a few µs. This compiles
the same schema files into plain predicates. It supports only the keywords below and refuses
anything else (the caller then falls back to ``jsonschema``). A hypothesis test checks it agrees
with ``jsonschema`` on arbitrary documents, and ``jsonschema`` still explains every rejection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class Check(Protocol):
    """A compiled schema: is ``x`` valid? (A protocol, so lambdas with defaults type-check.)"""

    def __call__(self, x: Any, /) -> bool: ...

_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$comment"}
_SUPPORTED = _ANNOTATIONS | {
    "type", "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "not",
    "required", "properties", "allOf", "$ref", "unevaluatedProperties", "maxProperties",
}  # fmt: skip


class Unsupported(ValueError):
    """The schema uses a keyword the fast path does not implement."""


def _is_integer(x: Any) -> bool:
    # JSON Schema: 3.0 is an integer; booleans are not numbers.
    t = type(x)
    return t is int or (t is float and x.is_integer())


def _is_number(x: Any) -> bool:
    t = type(x)
    return t is int or t is float


_TYPES: dict[str, Check] = {
    "object": lambda x: type(x) is dict,
    "string": lambda x: type(x) is str,
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda x: type(x) is bool,
    "array": lambda x: type(x) is list,
    "null": lambda x: x is None,
}


def compile_schema(
    schema: Mapping[str, Any], resolve: Callable[[str, str], Mapping[str, Any]], base_uri: str = "",
    *, fuse: bool = True,
) -> Check:
    """Compile ``schema``; ``resolve(base_uri, ref)`` returns the referenced schema document.
    ``fuse=False``: the plain composition of one check per keyword, the reference the fused
    object checks (``_fused_object``) are tested against."""
    base = str(schema.get("$id", base_uri))
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise Unsupported(f"keywords {sorted(unknown)}")
    if fuse and (fused := _fused_object(schema, resolve, base)) is not None:
        return fused
    checks: list[Check] = []
    # Names evaluated by this schema and its allOf/$ref subschemas (for unevaluatedProperties).
    evaluated: set[str] = set(schema.get("properties", {}))

    def sub(s: Mapping[str, Any]) -> Check:
        return compile_schema(s, resolve, base, fuse=fuse)

    if "$ref" in schema:
        target = resolve(base, schema["$ref"])
        checks.append(compile_schema(target, resolve, str(target.get("$id", base)), fuse=fuse))
        evaluated |= set(target.get("properties", {}))
    for part in schema.get("allOf", ()):
        checks.append(sub(part))
        if "$ref" in part:
            evaluated |= set(resolve(base, part["$ref"]).get("properties", {}))
        evaluated |= set(part.get("properties", {}))
    if "type" in schema:
        if not isinstance(schema["type"], str):
            raise Unsupported("type lists")
        if (leaf := _leaf(schema)) is not None:
            return leaf
        checks.append(_TYPES[schema["type"]])
    if "const" in schema:
        c = schema["const"]
        if isinstance(c, str):
            checks.append(lambda x, c=c: type(x) is str and x == c)
        elif type(c) is int:
            checks.append(lambda x, c=c: _is_number(x) and x == c)
        else:
            raise Unsupported("const of this type")
    if "enum" in schema:
        values = schema["enum"]
        if not all(isinstance(v, str) for v in values):
            raise Unsupported("non-string enum")
        allowed = frozenset(values)
        checks.append(lambda x, allowed=allowed: type(x) is str and x in allowed)
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search  # JSON Schema patterns are unanchored
        checks.append(lambda x, search=search: type(x) is not str or search(x) is not None)
    if "minLength" in schema:
        n = schema["minLength"]
        checks.append(lambda x, n=n: type(x) is not str or len(x) >= n)
    if "maxLength" in schema:
        n = schema["maxLength"]
        checks.append(lambda x, n=n: type(x) is not str or len(x) <= n)
    if "minimum" in schema:
        lo = schema["minimum"]
        checks.append(lambda x, lo=lo: not _is_number(x) or x >= lo)
    if "maximum" in schema:
        hi = schema["maximum"]
        checks.append(lambda x, hi=hi: not _is_number(x) or x <= hi)
    if "not" in schema:
        inner = sub(schema["not"])
        checks.append(lambda x, inner=inner: not inner(x))
    if "required" in schema:
        required = frozenset(schema["required"])
        checks.append(lambda x, r=required: type(x) is not dict or x.keys() >= r)
    if "maxProperties" in schema:
        n = schema["maxProperties"]
        checks.append(lambda x, n=n: type(x) is not dict or len(x) <= n)
    if "properties" in schema:
        props = {name: sub(s) for name, s in schema["properties"].items()}

        def check_properties(x: Any) -> bool:
            if type(x) is not dict:
                return True
            for name, value in x.items():
                check = props.get(name)
                if check is not None and not check(value):
                    return False
            return True

        checks.append(check_properties)
    if "unevaluatedProperties" in schema:
        if schema["unevaluatedProperties"] is not False:
            raise Unsupported("unevaluatedProperties other than false")
        names = frozenset(evaluated)
        checks.append(lambda x, names=names: type(x) is not dict or names.issuperset(x))

    return _all_of(checks)


_OBJECT_KEYS = _ANNOTATIONS | {"type", "required", "properties", "allOf", "$ref", "maxProperties"}


def _object_nodes(schema: Mapping[str, Any], resolve: Callable[[str, str], Mapping[str, Any]],
                  base: str, out: list[tuple[Mapping[str, Any], str]]) -> bool:
    """Collect ``schema`` and its ``$ref`` and ``allOf`` subschemas, with the base URI each is
    compiled against, into ``out``; False if one is not a plain object schema."""
    if set(schema) - _OBJECT_KEYS or schema.get("type", "object") != "object":
        return False
    out.append((schema, base))
    if "$ref" in schema:
        target = resolve(base, schema["$ref"])
        if not _object_nodes(target, resolve, str(target.get("$id", base)), out):
            return False
    return all(_object_nodes(part, resolve, str(part.get("$id", base)), out)
               for part in schema.get("allOf", ()))


def _fused_object(schema: Mapping[str, Any], resolve: Callable[[str, str], Mapping[str, Any]],
                  base: str) -> Check | None:
    """An object schema with its ``allOf`` and ``$ref`` parts as one predicate: one pass over
    the object's members, one check per member (the event schemas' parts each walked the whole
    object, a call per keyword). The same answers as the plain composition; None for a schema
    this does not cover."""
    top = {k: v for k, v in schema.items() if k != "unevaluatedProperties"}
    nodes: list[tuple[Mapping[str, Any], str]] = []
    if not _object_nodes(top, resolve, base, nodes):
        return None
    if not any(node.get("type") == "object" for node, _ in nodes):
        return None
    closed = "unevaluatedProperties" in schema
    if closed and schema["unevaluatedProperties"] is not False:
        return None  # the plain path raises Unsupported
    # What the plain path counts as evaluated: this schema's, its $ref's and its allOf parts'
    # (with their $refs') properties.
    evaluated = set(schema.get("properties", {}))
    if "$ref" in schema:
        evaluated |= set(resolve(base, schema["$ref"]).get("properties", {}))
    for part in schema.get("allOf", ()):
        if "$ref" in part:
            evaluated |= set(resolve(base, part["$ref"]).get("properties", {}))
        evaluated |= set(part.get("properties", {}))
    required: frozenset[str] = frozenset().union(*(n.get("required", ()) for n, _ in nodes))
    limits = [n["maxProperties"] for n, _ in nodes if "maxProperties" in n]
    max_properties = min(limits) if limits else None
    subschemas: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for node, node_base in nodes:
        for name, sub in node.get("properties", {}).items():
            subschemas.setdefault(name, []).append((sub, node_base))
    members: dict[str, Check] = {}
    for name, subs in subschemas.items():
        if closed and name not in evaluated:
            members[name] = _never
        else:
            members[name] = _member([(s, compile_schema(s, resolve, b)) for s, b in subs])
    if closed:
        for name in evaluated - members.keys():
            members[name] = _always
    get = members.get
    if not closed and not members:
        def check_bare_object(x: Any) -> bool:
            return type(x) is dict and x.keys() >= required and (
                max_properties is None or len(x) <= max_properties)

        return check_bare_object

    def check_object(x: Any) -> bool:
        if type(x) is not dict or not x.keys() >= required or (
                max_properties is not None and len(x) > max_properties):
            return False
        for name, value in x.items():
            check = get(name)
            if check is None:
                if closed:
                    return False
            elif not check(value):
                return False
        return True

    return check_object


def _always(x: Any) -> bool:
    return True


def _never(x: Any) -> bool:
    return False


def _member(checks: list[tuple[Mapping[str, Any], Check]]) -> Check:
    """Every check of one member. When one schema admits only listed strings (``const``, a
    string ``enum``), the conjunction is membership in the strings all the checks admit: the
    checks are pure, so a string equal to an admitted one passes them all."""
    for schema, _ in checks:
        if isinstance(schema.get("const"), str):
            candidates = {schema["const"]}
        elif "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
            candidates = set(schema["enum"])
        else:
            continue
        admitted = frozenset(v for v in candidates if all(check(v) for _, check in checks))
        if not admitted:
            return _never
        if len(admitted) == 1:
            (only,) = admitted
            return lambda x, only=only: type(x) is str and x == only
        return lambda x, admitted=admitted: type(x) is str and x in admitted
    return _all_of([check for _, check in checks])


def _leaf(schema: Mapping[str, Any]) -> Check | None:
    """One fused predicate for the common leaves (a string with length bounds and a pattern,
    an integer with bounds): the same answers as the separate checks, one call instead of four.
    None for any other schema."""
    keys = set(schema) - _ANNOTATIONS
    kind = schema["type"]
    if kind == "string" and keys <= {"type", "pattern", "minLength", "maxLength"}:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        search = re.compile(schema["pattern"]).search if "pattern" in schema else None
        if hi is None:
            hi = float("inf")

        def string(x: Any) -> bool:
            return type(x) is str and lo <= len(x) <= hi and (
                search is None or search(x) is not None)

        return string
    if kind == "integer" and keys <= {"type", "minimum", "maximum"}:
        low, high = schema.get("minimum", float("-inf")), schema.get("maximum", float("inf"))

        def integer(x: Any) -> bool:
            return _is_integer(x) and low <= x <= high

        return integer
    return None


def _all_of(checks: list[Check]) -> Check:
    """One predicate for "every check passes", without a generator per call (this runs once
    per schema node per event)."""
    if not checks:
        return lambda x: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda x: a(x) and b(x)
    all_checks = tuple(checks)

    def check_all(x: Any) -> bool:
        for check in all_checks:  # noqa: SIM110 (a generator per call costs more)
            if not check(x):
                return False
        return True

    return check_all
