"""DuckDB tables for layers (stratification models), appended to ``userloop.store.schema.DDL``.

- ``layer_models``: saved definitions (kind + typed parameters as JSON, optional schedule).
- ``layer_members``: the current layer of each person per model (the shared contract other
  capabilities read: ``project_id, model, person_id, layer, scores, computed_at``). Replaced by
  every compute whose reference time is the model's latest. Unique on ``(project_id, model,
  person_id)`` by construction (a compute yields one row per person) but without an index: with
  the primary-key index, replacing a million members took about 20 s (deleting and inserting the
  keys, then the commit), without it about 1 s.
- ``layer_history``: a person's layer over time as half-open intervals ``[valid_from, valid_to)``
  (``valid_to`` NULL while it lasts); rows are written only for persons whose layer changed.
  Unique on ``(project_id, model, person_id, valid_from)``; no index, so that a compute of a
  million persons appends in bulk (every read filters on project and model and scans).
- ``layer_snapshots``: one row per computed reference time (``as_of``), so a compute can be
  inserted between two earlier ones (a backfill) and history still splits at the right times.
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS layer_models (
        project_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        params JSON NOT NULL,
        schedule VARCHAR,
        description VARCHAR NOT NULL DEFAULT '',
        member_count BIGINT,
        computed_at TIMESTAMPTZ,
        as_of TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS layer_members (
        project_id INTEGER NOT NULL,
        model VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        layer VARCHAR NOT NULL,
        scores JSON,
        computed_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS layer_history (
        project_id INTEGER NOT NULL,
        model VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        layer VARCHAR NOT NULL,
        valid_from TIMESTAMPTZ NOT NULL,
        valid_to TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS layer_snapshots (
        project_id INTEGER NOT NULL,
        model VARCHAR NOT NULL,
        as_of TIMESTAMPTZ NOT NULL,
        computed_at TIMESTAMPTZ NOT NULL,
        member_count BIGINT NOT NULL,
        changed BIGINT NOT NULL,
        PRIMARY KEY (project_id, model, as_of)
    )""",
]
