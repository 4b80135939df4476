"""Reconciliation: compare Shopify's levels with the ledger's ATS and explain every difference."""
