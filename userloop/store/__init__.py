"""Storage: the DuckDB schema, the store wrapper and the single batching writer."""
