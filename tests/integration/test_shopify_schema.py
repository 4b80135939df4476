"""Shopify's published Admin schemas load into graphql-core and carry the inventory mutation."""

from __future__ import annotations

import pytest

from pipeline.infra import shopify_schema


@pytest.mark.parametrize("api_version", ["2026-01", "2026-10"])
def test_published_schema_has_inventory_set_quantities(api_version: str) -> None:
    shopify_schema.fetch()
    schema = shopify_schema.load(api_version)
    mutation = schema.mutation_type
    assert mutation is not None
    assert "inventorySetQuantities" in mutation.fields
    quantity_input = schema.type_map["InventoryQuantityInput"]
    assert "changeFromQuantity" in quantity_input.fields  # type: ignore[union-attr]


def test_2026_10_has_the_idempotent_directive() -> None:
    schema = shopify_schema.load("2026-10")
    assert "idempotent" in {d.name for d in schema.directives}
