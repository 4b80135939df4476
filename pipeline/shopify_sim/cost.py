"""Requested query cost by Shopify's documented rules (pure, works on a validated AST).

Scalars and enums cost 0, objects 1, a connection 2 + size x (cost of one node) where size is
``first``/``last``, and a mutation field 10. Objects directly inside a mutation payload are covered
by the mutation's 10 (observed: ``actualQueryCost`` 10 for typical mutations).
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.values import get_argument_values

MUTATION_COST = 10
CONNECTION_BASE = 2


class CostError(Exception):
    """The query cannot be costed (e.g. a connection without first/last)."""


def is_connection(t: Any) -> bool:
    return isinstance(t, GraphQLObjectType) and t.name.endswith("Connection") and (
        "edges" in t.fields or "nodes" in t.fields
    )


def iter_fields(
    parent: Any, sel: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    """Field nodes of a selection set with fragments flattened (type conditions ignored)."""
    out: list[FieldNode] = []
    if sel is None:
        return out
    for s in sel.selections:
        if isinstance(s, FieldNode):
            out.append(s)
        elif isinstance(s, InlineFragmentNode):
            out.extend(iter_fields(parent, s.selection_set, fragments))
        elif isinstance(s, FragmentSpreadNode) and s.name.value in fragments:
            out.extend(iter_fields(parent, fragments[s.name.value].selection_set, fragments))
    return out


class CostCalculator:
    """Computes requested cost for one operation given its variables."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode],
                 variables: Any) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selection(self, parent: Any, sel: SelectionSetNode | None, payload: bool = False) -> int:
        total = 0
        for node in iter_fields(parent, sel, self.fragments):
            total += self.field(parent, node, payload)
        return total

    def page_size(self, parent: Any, node: FieldNode) -> int:
        fdef = parent.fields[node.name.value]
        args = get_argument_values(fdef, node, self.variables)
        size = args.get("first") if args.get("first") is not None else args.get("last")
        if size is None:
            raise CostError("you must provide one of first or last")
        return int(size)

    def node_cost(self, conn_type: GraphQLObjectType, node: FieldNode) -> int:
        """Cost of one element of a connection (node object plus what is selected inside)."""
        cost = 0
        for child in iter_fields(conn_type, node.selection_set, self.fragments):
            name = child.name.value
            if name == "edges":
                edge_t = get_named_type(conn_type.fields["edges"].type)
                for gc in iter_fields(edge_t, child.selection_set, self.fragments):
                    if gc.name.value == "node":
                        node_t = get_named_type(edge_t.fields["node"].type)
                        cost += 1 + self.selection(node_t, gc.selection_set)
            elif name == "nodes":
                node_t = get_named_type(conn_type.fields["nodes"].type)
                cost += 1 + self.selection(node_t, child.selection_set)
        return cost

    def field(self, parent: Any, node: FieldNode, payload: bool = False) -> int:
        name = node.name.value
        if name.startswith("__") or not hasattr(parent, "fields") or name not in parent.fields:
            return 0
        rtype = get_named_type(parent.fields[name].type)
        if is_leaf_type(rtype):
            return 0
        if is_connection(rtype):
            assert isinstance(rtype, GraphQLObjectType)
            return CONNECTION_BASE + self.page_size(parent, node) * self.node_cost(rtype, node)
        own = 0 if payload else 1
        return own + self.selection(rtype, node.selection_set)

    def mutation_field(self, parent: Any, node: FieldNode) -> int:
        rtype = get_named_type(parent.fields[node.name.value].type)
        return MUTATION_COST + self.selection(rtype, node.selection_set, payload=True)


def requested_cost(schema: GraphQLSchema, root: GraphQLObjectType, sel: SelectionSetNode,
                   fragments: dict[str, FragmentDefinitionNode], variables: Any,
                   mutation: bool) -> int:
    """Requested cost of an operation's root selection set."""
    calc = CostCalculator(schema, fragments, variables)
    total = 0
    for node in iter_fields(root, sel, fragments):
        if node.name.value.startswith("__"):
            continue
        total += calc.mutation_field(root, node) if mutation else calc.field(root, node)
    return total
