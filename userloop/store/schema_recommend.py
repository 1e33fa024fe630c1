"""DuckDB tables for recommendations (appended to ``userloop.store.schema.DDL``). Owned by
``userloop/recommend``. The catalogue itself is the ``items`` table of the base schema (fields as
properties: title, tags, category, price, author, created_at, active).

``recommend_settings``     one validated configuration per project: which events are interactions
                           (and their weights), model parameters, scenes and their business rules,
                           A/B variants, the retraining schedule.
``recommend_interests``    tags a person picked (cold start), per distinct id.
``recommend_models``       one row per training: when, on what, how long, which CF model, status.
``recommend_arrays``       the serving artifact of a model: one row per numpy array (raw ``.npy`` bytes).
``recommend_evaluations``  offline evaluation results (the table printed by ``recommend evaluate``).
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS recommend_settings (
        project_id INTEGER NOT NULL,
        config JSON NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id)
    )""",
    """CREATE TABLE IF NOT EXISTS recommend_interests (
        project_id INTEGER NOT NULL,
        distinct_id VARCHAR NOT NULL,
        tags VARCHAR[] NOT NULL,
        set_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, distinct_id)
    )""",
    """CREATE TABLE IF NOT EXISTS recommend_models (
        project_id INTEGER NOT NULL,
        model_id INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        data_until TIMESTAMPTZ NOT NULL,
        cf VARCHAR NOT NULL,
        users INTEGER NOT NULL,
        items INTEGER NOT NULL,
        interactions BIGINT NOT NULL,
        seconds DOUBLE NOT NULL,
        bytes BIGINT NOT NULL,
        meta JSON NOT NULL,
        trigger VARCHAR NOT NULL,
        PRIMARY KEY (project_id, model_id)
    )""",
    """CREATE TABLE IF NOT EXISTS recommend_arrays (
        project_id INTEGER NOT NULL,
        model_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (project_id, model_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS recommend_evaluations (
        project_id INTEGER NOT NULL,
        evaluated_at TIMESTAMPTZ NOT NULL,
        split VARCHAR NOT NULL,
        result JSON NOT NULL,
        PRIMARY KEY (project_id, evaluated_at, split)
    )""",
]
