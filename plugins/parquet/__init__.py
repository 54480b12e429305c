"""The ``parquet`` plugin (placeholder until written)."""
