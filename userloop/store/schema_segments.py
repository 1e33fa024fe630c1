"""DuckDB tables for segments (appended to ``userloop.store.schema.DDL``).

- ``segments``: the saved definitions (the rule as JSON, as decoded and re-encoded).
- ``segment_members``: the current members of each saved segment (the shared contract other
  capabilities read: ``project_id, segment, person_id``).
- ``segment_history``: one row per stay of a person in a segment; ``left_at`` is NULL while the
  person is still a member. Written only for changes (enter: a new row; leave: ``left_at`` set).
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS segments (
        project_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        rule JSON NOT NULL,
        schedule VARCHAR,
        description VARCHAR NOT NULL DEFAULT '',
        member_count BIGINT,
        computed_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS segment_members (
        project_id INTEGER NOT NULL,
        segment VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        entered_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, segment, person_id)
    )""",
    """CREATE TABLE IF NOT EXISTS segment_history (
        project_id INTEGER NOT NULL,
        segment VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        entered_at TIMESTAMPTZ NOT NULL,
        left_at TIMESTAMPTZ,
        PRIMARY KEY (project_id, segment, person_id, entered_at)
    )""",
]
