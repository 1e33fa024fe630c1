"""DuckDB tables for audit (appended to ``userloop.store.schema.DDL``)."""

DDL: list[str] = []
