"""DuckDB tables for segments (appended to ``userloop.store.schema.DDL``)."""

DDL: list[str] = []
