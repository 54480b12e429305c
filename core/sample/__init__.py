"""Deterministic sample data shipped for the demo and the quickstart."""
