"""DuckDB tables for alerts (appended to ``userloop.store.schema.DDL``)."""

DDL: list[str] = []
