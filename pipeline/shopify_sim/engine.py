"""GraphQL front end: parse + validate against the version's schema (cached), Shopify-shaped
errors, and a small resolver walk over the validated AST (faster than graphql-core execution and
lets unimplemented fields fail loudly before anything runs)."""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_directive_values
from graphql.type import GraphQLIncludeDirective, GraphQLSkipDirective

from pipeline.shopify_sim.cost import CostCalculator, is_connection

Resolver = Callable[[Any, dict[str, Any], "ExecContext"], Any]
# type name -> field name -> resolver. Filled by pipeline.shopify_sim.resolvers.
RESOLVERS: dict[str, dict[str, Resolver]] = {}
MAX_INPUT_ARRAY = 250


def resolver(type_name: str, field_name: str) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        RESOLVERS.setdefault(type_name, {})[field_name] = fn
        return fn
    return register


class FieldError(Exception):
    """A top-level error for one field (its value becomes null)."""

    def __init__(self, message: str, code: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


def _loc(err: GraphQLError) -> list[dict[str, int]]:
    return [{"line": x.line, "column": x.column} for x in (err.locations or [])]


_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, dict[str, Any]]]]] = [
    (re.compile(r"Cannot query field '(\w+)' on type '(\w+)'"),
     lambda m: (f"Field '{m[1]}' doesn't exist on type '{m[2]}'",
                {"code": "undefinedField", "typeName": m[2], "fieldName": m[1]})),
    (re.compile(r"Unknown argument '(\w+)' on field '(\w+)\.(\w+)'"),
     lambda m: (f"Field '{m[3]}' doesn't accept argument '{m[1]}'",
                {"code": "argumentNotAccepted", "name": m[3], "typeName": "Field",
                 "argumentName": m[1]})),
    (re.compile(r"Field '(\w+)' of type '[^']+' must have a selection of subfields"),
     lambda m: (f"Field must have selections (field '{m[1]}' returns an object)",
                {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'"})),
    (re.compile(r"Field '(\w+)' argument '(\w+)' of type '([^']+)' is required"),
     lambda m: (f"Field '{m[1]}' is missing required arguments: {m[2]}",
                {"code": "missingRequiredArguments", "className": "Field", "name": m[1],
                 "arguments": m[2]})),
    (re.compile(r"cannot represent|Expected value of type|is not defined by type"),
     lambda m: (m.string, {"code": "argumentLiteralsIncompatible"})),
]


def shopify_error(err: GraphQLError) -> dict[str, Any]:
    """Translate a graphql-core validation error into the graphql-ruby shape Shopify returns."""
    message, ext = err.message, {"code": "validationError"}
    for pattern, build in _PATTERNS:
        m = pattern.search(err.message)
        if m:
            message, ext = build(m)
            break
    out: dict[str, Any] = {"message": message}
    if err.locations:
        out["locations"] = _loc(err)
    out["extensions"] = ext
    return out


@dataclass
class PreparedDocument:
    """A parsed, validated document and what can be known before variables arrive."""

    errors: list[dict[str, Any]]
    operations: dict[str | None, OperationDefinitionNode] = field(default_factory=dict)
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    unimplemented: list[dict[str, Any]] = field(default_factory=list)


class DocumentCache:
    """LRU of prepared documents per (version, query text): clients resend the same text."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._docs: OrderedDict[tuple[str, str], PreparedDocument] = OrderedDict()

    def get(self, schema: GraphQLSchema, version: str, query: str) -> PreparedDocument:
        key = (version, query)
        doc = self._docs.get(key)
        if doc is not None:
            self._docs.move_to_end(key)
            return doc
        doc = prepare(schema, query)
        self._docs[key] = doc
        if len(self._docs) > self.size:
            self._docs.popitem(last=False)
        return doc


def prepare(schema: GraphQLSchema, query: str) -> PreparedDocument:
    try:
        ast = parse(query)
    except GraphQLError as err:
        return PreparedDocument([{"message": err.message, "locations": _loc(err),
                                  "extensions": {"code": "parseError"}}])
    errors = validate(schema, ast)
    if errors:
        return PreparedDocument([shopify_error(e) for e in errors])
    ops = {d.name.value if d.name else None: d for d in ast.definitions
           if isinstance(d, OperationDefinitionNode)}
    frags = {d.name.value: d for d in ast.definitions if isinstance(d, FragmentDefinitionNode)}
    doc = PreparedDocument([], ops, frags)
    for op in ops.values():
        root = schema.mutation_type if op.operation == OperationType.MUTATION else schema.query_type
        _find_unimplemented(schema, root, op.selection_set, frags, doc.unimplemented, set())
    return doc


def _find_unimplemented(schema: GraphQLSchema, parent: Any, sel: SelectionSetNode | None,
                        frags: dict[str, FragmentDefinitionNode], out: list[dict[str, Any]],
                        seen: set[str]) -> None:
    if sel is None:
        return
    for s in sel.selections:
        if isinstance(s, InlineFragmentNode):
            cond = schema.get_type(s.type_condition.name.value) if s.type_condition else parent
            _find_unimplemented(schema, cond, s.selection_set, frags, out, seen)
        elif isinstance(s, FragmentSpreadNode):
            frag = frags[s.name.value]
            cond = schema.get_type(frag.type_condition.name.value)
            _find_unimplemented(schema, cond, frag.selection_set, frags, out, seen)
        elif isinstance(s, FieldNode):
            name = s.name.value
            if name == "__typename":
                continue
            tname = getattr(parent, "name", "?")
            if name not in RESOLVERS.get(tname, {}):
                key = f"{tname}.{name}"
                if key not in seen:
                    seen.add(key)
                    out.append({
                        "message": f"Field '{name}' on type '{tname}' is not implemented by the "
                        "Tally Shopify simulator",
                        "locations": [{"line": s.loc.source.get_location(s.loc.start).line,
                                       "column": s.loc.source.get_location(s.loc.start).column}]
                        if s.loc else [],
                        "extensions": {"code": "NOT_IMPLEMENTED_IN_SIMULATOR",
                                       "typeName": tname, "fieldName": name},
                    })
                continue
            rtype = get_named_type(parent.fields[name].type)
            if not is_leaf_type(rtype):
                _find_unimplemented(schema, rtype, s.selection_set, frags, out, seen)


@dataclass
class Conn:
    """A page of a connection; ``requested`` is first/last, for the actual-cost refund."""

    items: list[Any]
    cursors: list[str]
    has_next: bool
    has_prev: bool
    requested: int


@dataclass
class ExecContext:
    schema: GraphQLSchema
    version: str
    variables: Any  # graphql-core VariableValues (coerced)
    fragments: dict[str, FragmentDefinitionNode]
    env: Any  # request environment: shop, simulator state (see resolvers.RequestEnv)
    errors: list[dict[str, Any]] = field(default_factory=list)
    refund: int = 0
    node: FieldNode | None = None
    path: list[str | int] = field(default_factory=list)

    def calc(self) -> CostCalculator:
        return CostCalculator(self.schema, self.fragments, self.variables)


def _included(ctx: ExecContext, node: Any) -> bool:
    if not node.directives:
        return True
    skip = get_directive_values(GraphQLSkipDirective, node, ctx.variables)
    if skip and skip.get("if"):
        return False
    inc = get_directive_values(GraphQLIncludeDirective, node, ctx.variables)
    return not (inc is not None and not inc.get("if"))


def collect(ctx: ExecContext, obj_type: GraphQLObjectType, sel: SelectionSetNode,
            out: list[FieldNode] | None = None) -> list[FieldNode]:
    out = [] if out is None else out
    for s in sel.selections:
        if not _included(ctx, s):
            continue
        if isinstance(s, FieldNode):
            out.append(s)
            continue
        if isinstance(s, InlineFragmentNode):
            cond, sub = s.type_condition, s.selection_set
        else:
            assert isinstance(s, FragmentSpreadNode)
            frag = ctx.fragments[s.name.value]
            cond, sub = frag.type_condition, frag.selection_set
        if cond is not None:
            ctype = ctx.schema.get_type(cond.name.value)
            if ctype is not obj_type and not (
                ctype is not None and not isinstance(ctype, GraphQLObjectType)
                and ctx.schema.is_sub_type(ctype, obj_type)  # type: ignore[arg-type]
            ):
                continue
        collect(ctx, obj_type, sub, out)
    return out


def check_input_sizes(value: Any, path: list[str]) -> list[str] | None:
    """Path to the first input array longer than Shopify's 250-element limit, if any."""
    if isinstance(value, list):
        if len(value) > MAX_INPUT_ARRAY:
            return path
        for i, v in enumerate(value):
            found = check_input_sizes(v, [*path, str(i)])
            if found:
                return found
    elif isinstance(value, dict):
        for k, v in value.items():
            found = check_input_sizes(v, [*path, k])
            if found:
                return found
    return None


def field_args(ctx: ExecContext, obj_type: GraphQLObjectType, node: FieldNode) -> dict[str, Any]:
    fdef = obj_type.fields[node.name.value]
    return get_argument_values(fdef, node, ctx.variables) if fdef.args else {}


def _error_dict(ctx: ExecContext, err: FieldError, node: FieldNode, path: list[str | int]
                ) -> dict[str, Any]:
    out: dict[str, Any] = {"message": str(err)}
    if node.loc:
        loc = node.loc.source.get_location(node.loc.start)
        out["locations"] = [{"line": loc.line, "column": loc.column}]
    out["path"] = path
    out["extensions"] = {"code": err.code, **err.extra}
    return out


def execute_fields(ctx: ExecContext, obj_type: GraphQLObjectType, value: Any,
                   sel: SelectionSetNode, path: list[str | int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    resolvers = RESOLVERS.get(obj_type.name, {})
    for node in collect(ctx, obj_type, sel):
        name = node.name.value
        key = node.alias.value if node.alias else name
        if name == "__typename":
            out[key] = obj_type.name
            continue
        fpath = [*path, key]
        try:
            ctx.node = node
            raw = resolvers[name](value, field_args(ctx, obj_type, node), ctx)
        except FieldError as err:
            ctx.errors.append(_error_dict(ctx, err, node, fpath))
            out[key] = None
            continue
        out[key] = complete(ctx, obj_type.fields[name].type, raw, node, fpath)
    return out


def complete(ctx: ExecContext, t: Any, raw: Any, node: FieldNode, path: list[str | int]) -> Any:
    if isinstance(t, GraphQLNonNull):
        t = t.of_type
    if raw is None:
        return None
    if isinstance(t, GraphQLList):
        return [complete(ctx, t.of_type, x, node, [*path, i]) for i, x in enumerate(raw)]
    if is_leaf_type(t):
        return raw
    if not isinstance(t, GraphQLObjectType):
        t = ctx.schema.get_type(raw.__typename__)  # abstract: resolved objects name their type
    assert isinstance(t, GraphQLObjectType) and node.selection_set is not None
    if isinstance(raw, Conn) and is_connection(t):
        missing = raw.requested - len(raw.items)
        if missing > 0:
            ctx.refund += missing * ctx.calc().node_cost(t, node)
    return execute_fields(ctx, t, raw, node.selection_set, path)


async def execute_mutation(ctx: ExecContext, sel: SelectionSetNode) -> dict[str, Any]:
    """Root mutation fields run one after another; a resolver may await (simulated latency)."""
    root = ctx.schema.mutation_type
    assert root is not None
    out: dict[str, Any] = {}
    for node in collect(ctx, root, sel):
        name = node.name.value
        key = node.alias.value if node.alias else name
        if name == "__typename":
            out[key] = root.name
            continue
        try:
            args = field_args(ctx, root, node)
            too_big = check_input_sizes(args, [name])
            if too_big:
                size = len(_dig(args, too_big[1:]))
                raise FieldError(f"The input array size of {size} is greater than the maximum "
                                 f"allowed of {MAX_INPUT_ARRAY}.", "MAX_INPUT_SIZE_EXCEEDED",
                                 argumentName=too_big[-1])
            ctx.node = node
            raw = RESOLVERS[root.name][name](None, args, ctx)
            if inspect.isawaitable(raw):
                raw = await raw
        except FieldError as err:
            ctx.errors.append(_error_dict(ctx, err, node, [key]))
            out[key] = None
            continue
        out[key] = complete(ctx, root.fields[name].type, raw, node, [key])
    return out


def _dig(value: Any, path: list[str]) -> Any:
    for p in path:
        value = value[int(p)] if isinstance(value, list) else value[p]
    return value
