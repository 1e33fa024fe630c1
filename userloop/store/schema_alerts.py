"""DuckDB tables for alerts (early warning), appended to ``userloop.store.schema.DDL``.

- ``alert_rules``: saved rules: a condition (layer flow or metric change), channels (webhook,
  email), schedule, cooldown, and the outcome of the last check.
- ``alert_log``: one row per fired alert with what was measured and how each delivery went.
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS alert_rules (
        project_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        description VARCHAR NOT NULL DEFAULT '',
        condition JSON NOT NULL,
        channels JSON NOT NULL,
        schedule VARCHAR,
        cooldown_minutes INTEGER NOT NULL,
        enabled BOOLEAN NOT NULL,
        last_checked_at TIMESTAMPTZ,
        last_value DOUBLE,
        last_fired_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, name)
    )""",
    """CREATE SEQUENCE IF NOT EXISTS alert_log_ids START 1""",
    """CREATE TABLE IF NOT EXISTS alert_log (
        project_id INTEGER NOT NULL,
        id BIGINT NOT NULL,
        rule VARCHAR NOT NULL,
        fired_at TIMESTAMPTZ NOT NULL,
        trigger VARCHAR NOT NULL,
        value DOUBLE,
        threshold DOUBLE,
        message VARCHAR NOT NULL,
        details JSON NOT NULL,
        deliveries JSON NOT NULL,
        PRIMARY KEY (project_id, id)
    )""",
]
