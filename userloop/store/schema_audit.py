"""DuckDB tables of the identity audit and the portraits (appended to ``userloop.store.schema.DDL``).

``merge_log`` has one row per change of identity, numbered per project in the order applied:

* ``merge``: the person of ``other_id`` was absorbed into the person of ``distinct_id`` (its ids
  ``moved_distinct_ids`` now belong to ``surviving_person_id``); ``absorbed_*`` and ``surviving_*``
  snapshot both persons as they were just before; ``undone_by`` is set when an unmerge undid it.
* ``unmerge``: an operator split ``moved_distinct_ids`` off ``surviving_person_id`` into
  ``absorbed_person_id`` (re-created with ``absorbed_properties``); ``undoes`` names the merge.
* ``unbind``: ``distinct_id`` left ``surviving_person_id`` for a new person ``absorbed_person_id``.

``kind`` and ``message_id`` say what asked for it (see ``userloop.ingest.event.Merge``).
``portrait_settings`` holds which events count as purchases and coupon uses in a project's portraits.
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS merge_log (
        project_id INTEGER NOT NULL,
        merge_id BIGINT NOT NULL,
        action VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        message_id VARCHAR,
        distinct_id VARCHAR,
        other_id VARCHAR,
        surviving_person_id VARCHAR NOT NULL,
        absorbed_person_id VARCHAR NOT NULL,
        moved_distinct_ids VARCHAR[] NOT NULL,
        absorbed_properties JSON,
        absorbed_created_at TIMESTAMPTZ,
        surviving_properties JSON,
        surviving_created_at TIMESTAMPTZ,
        undoes BIGINT,
        undone_by BIGINT,
        request_id VARCHAR,
        logged_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, merge_id)
    )""",
    """CREATE TABLE IF NOT EXISTS portrait_settings (
        project_id INTEGER NOT NULL,
        purchase_events VARCHAR[] NOT NULL,
        revenue_property VARCHAR NOT NULL,
        coupon_events VARCHAR[] NOT NULL,
        visit_gap_minutes DOUBLE NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id)
    )""",
]
