"""DuckDB schema. Every key and sort order starts with ``project_id``.

Persons are resolved at query time through ``identities`` (distinct id -> person), so a merge
re-attributes old events without rewriting them; ``events.person_id`` keeps the person at ingest.
"""

from __future__ import annotations

EVENT_COLUMNS: list[tuple[str, str]] = [
    ("project_id", "INTEGER NOT NULL"),
    ("message_id", "VARCHAR NOT NULL"),
    ("event", "VARCHAR NOT NULL"),
    ("type", "VARCHAR NOT NULL"),
    ("distinct_id", "VARCHAR NOT NULL"),
    ("anonymous_id", "VARCHAR"),
    ("user_id", "VARCHAR"),
    ("timestamp", "TIMESTAMPTZ NOT NULL"),
    ("original_timestamp", "TIMESTAMPTZ"),
    ("sent_at", "TIMESTAMPTZ"),
    ("received_at", "TIMESTAMPTZ NOT NULL"),
    ("properties", "JSON"),
    ("url", "VARCHAR"),
    ("path", "VARCHAR"),
    ("referrer", "VARCHAR"),
    ("referring_domain", "VARCHAR"),
    ("utm_source", "VARCHAR"),
    ("utm_medium", "VARCHAR"),
    ("utm_campaign", "VARCHAR"),
    ("utm_content", "VARCHAR"),
    ("utm_term", "VARCHAR"),
    ("channel", "VARCHAR"),
    ("os", "VARCHAR"),
    ("browser", "VARCHAR"),
    ("device_type", "VARCHAR"),
    ("app_version", "VARCHAR"),
    ("lib", "VARCHAR"),
    ("ip", "VARCHAR"),
    ("city", "VARCHAR"),
    ("region", "VARCHAR"),
    ("country", "VARCHAR"),
    ("source", "VARCHAR"),
    ("person_id", "VARCHAR"),
]

EVENT_COLUMN_NAMES = [name for name, _ in EVENT_COLUMNS]

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE SEQUENCE IF NOT EXISTS project_ids START 1""",
    """CREATE TABLE IF NOT EXISTS projects (
        id INTEGER PRIMARY KEY DEFAULT nextval('project_ids'),
        name VARCHAR NOT NULL UNIQUE,
        write_key VARCHAR NOT NULL UNIQUE,
        secret_key VARCHAR NOT NULL UNIQUE,
        timezone VARCHAR NOT NULL DEFAULT 'UTC',
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
    )""",
    "CREATE TABLE IF NOT EXISTS events ("
    + ", ".join(f'"{n}" {t}' for n, t in EVENT_COLUMNS)
    + ", PRIMARY KEY (project_id, message_id))",
    """CREATE TABLE IF NOT EXISTS persons (
        project_id INTEGER NOT NULL,
        person_id VARCHAR NOT NULL,
        properties JSON NOT NULL DEFAULT '{}',
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, person_id)
    )""",
    """CREATE TABLE IF NOT EXISTS identities (
        project_id INTEGER NOT NULL,
        distinct_id VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        PRIMARY KEY (project_id, distinct_id)
    )""",
    # distinct ids whose person changed after events were stored under them (merges, unbinds):
    # analytics read coalesce(override, events.person_id) instead of joining all identities.
    """CREATE TABLE IF NOT EXISTS person_overrides (
        project_id INTEGER NOT NULL,
        distinct_id VARCHAR NOT NULL,
        person_id VARCHAR NOT NULL,
        PRIMARY KEY (project_id, distinct_id)
    )""",
    # which events and property keys a project has seen: query validation and autocomplete
    """CREATE TABLE IF NOT EXISTS event_properties (
        project_id INTEGER NOT NULL,
        event VARCHAR NOT NULL,
        property VARCHAR NOT NULL,
        PRIMARY KEY (project_id, event, property)
    )""",
    """CREATE TABLE IF NOT EXISTS groups (
        project_id INTEGER NOT NULL,
        group_type VARCHAR NOT NULL,
        group_key VARCHAR NOT NULL,
        properties JSON NOT NULL DEFAULT '{}',
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, group_type, group_key)
    )""",
    """CREATE TABLE IF NOT EXISTS items (
        project_id INTEGER NOT NULL,
        item_type VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        properties JSON NOT NULL DEFAULT '{}',
        deleted BOOLEAN NOT NULL DEFAULT false,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, item_type, item_id)
    )""",
    """CREATE TABLE IF NOT EXISTS admin_users (
        username VARCHAR PRIMARY KEY,
        password_hash VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
    )""",
]

# tables of the people stage, one module per capability
from userloop.store import (  # noqa: E402
    schema_alerts,
    schema_audit,
    schema_console,
    schema_layers,
    schema_recommend,
    schema_segments,
    schema_tags,
)

for _module in (schema_audit, schema_tags, schema_segments, schema_layers, schema_alerts, schema_console, schema_recommend):
    DDL += _module.DDL

SCHEMA_VERSION = "1"
