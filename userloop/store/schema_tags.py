"""DuckDB tables for tags (appended to ``userloop.store.schema.DDL``)."""

DDL: list[str] = []
