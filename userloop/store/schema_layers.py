"""DuckDB tables for layers (appended to ``userloop.store.schema.DDL``)."""

DDL: list[str] = []
