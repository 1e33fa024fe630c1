"""DuckDB tables for tags (appended to ``userloop.store.schema.DDL``). Owned by ``userloop/people/tags``.

``tags``         one definition per (project, name): kind, source, category path, the validated
                 definition as JSON, the schedule and the last compute's outcome.
``tag_values``   the CURRENT value of every tag for every person who has one (all kinds); read by
                 segments, portraits and layers. ``num_value`` is the value as a number when it is one.
``tag_history``  dynamic tags only: one row per (person, value) period, ``valid_from`` inclusive,
                 ``valid_to`` exclusive, NULL while current. The value of tag T for person P at
                 time X is the row with ``valid_from <= X AND (valid_to IS NULL OR X < valid_to)``.
``tag_inputs``   values set by API or CSV import, kept per distinct id so that a later merge or
                 unmerge moves them with the id (resolved to persons on every compute).
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS tags (
        project_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        category VARCHAR NOT NULL,
        description VARCHAR NOT NULL DEFAULT '',
        definition JSON NOT NULL,
        schedule VARCHAR,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        computed_at TIMESTAMPTZ,
        compute_ms DOUBLE,
        last_error VARCHAR,
        PRIMARY KEY (project_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS tag_values (
        project_id INTEGER NOT NULL,
        tag VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        num_value DOUBLE,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, tag, person_id)
    )""",
    """CREATE TABLE IF NOT EXISTS tag_history (
        project_id INTEGER NOT NULL,
        tag VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        num_value DOUBLE,
        valid_from TIMESTAMPTZ NOT NULL,
        valid_to TIMESTAMPTZ,
        PRIMARY KEY (project_id, tag, person_id, valid_from)
    )""",
    """CREATE TABLE IF NOT EXISTS tag_inputs (
        project_id INTEGER NOT NULL,
        tag VARCHAR NOT NULL,
        distinct_id VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        set_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, tag, distinct_id)
    )""",
]
