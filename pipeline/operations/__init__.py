"""Operator commands: catalog import, ledger lookup."""
