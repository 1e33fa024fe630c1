"""The one internal event model, and the operations on persons, groups and items.

Every wire format (``segment.py``, ``posthog.py``, ``sensors.py``, file importers) turns what it
receives into a :class:`Payload`: events plus ordered operations. The writer stores a payload in one
transaction (see ``userloop/store/writer.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class Event(msgspec.Struct, kw_only=True, gc=False):
    """One stored behaviour. Field order is the column order of the ``events`` table."""

    project_id: int
    message_id: str
    event: str
    type: str  # track | page | screen | identify | alias | group | capture | ...
    distinct_id: str
    anonymous_id: str | None = None
    user_id: str | None = None
    timestamp: datetime  # corrected: original - (sent_at - received_at), clamped
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    received_at: datetime
    # JSON text of an object, or the object's bytes as received (``msgspec.Raw``, from a typed
    # decode: stored without decoding and re-encoding it; the spool writes it as a JSON object)
    properties: Any = "{}"
    url: str | None = None
    path: str | None = None
    referrer: str | None = None
    referring_domain: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_term: str | None = None
    channel: str | None = None
    os: str | None = None
    browser: str | None = None
    device_type: str | None = None
    app_version: str | None = None
    lib: str | None = None
    ip: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    source: str = "api"  # segment | posthog | sensors | import | demo


EVENT_FIELDS: tuple[str, ...] = Event.__struct_fields__

ProfileOpKind = Literal["set", "set_once", "increment", "append", "unset", "delete"]


class Merge(msgspec.Struct, kw_only=True, tag="merge"):
    """Link ``other_id`` to the person of ``distinct_id`` (identify, alias, signup, bind).

    ``message_id`` and ``kind`` say what asked for it (the merge log, ``userloop/people/audit.py``):
    ``identify`` / ``alias`` (Segment), ``$identify`` / ``$create_alias`` / ``$merge_dangerously``
    (PostHog), ``track_signup`` / ``bind`` / ``login_id`` (Sensors), ``api`` otherwise.
    """

    project_id: int
    distinct_id: str
    other_id: str
    message_id: str | None = None
    kind: str = "api"


class Unbind(msgspec.Struct, kw_only=True, tag="unbind"):
    """Detach ``distinct_id`` from its person; it gets a person of its own."""

    project_id: int
    distinct_id: str


class Unmerge(msgspec.Struct, kw_only=True, tag="unmerge"):
    """Undo a merge of ``person_id``: by merge log id, or split off ``distinct_ids`` (an operator's
    request; applied by ``userloop.people.audit.apply_unmerge``, found again by ``request_id``)."""

    project_id: int
    person_id: str
    request_id: str
    merge_id: int | None = None
    distinct_ids: list[str] = []
    kind: str = "operator"


class ProfileOp(msgspec.Struct, kw_only=True, tag="profile"):
    project_id: int
    distinct_id: str
    op: ProfileOpKind
    properties: dict[str, Any] = {}
    delete_events: bool = False


class GroupOp(msgspec.Struct, kw_only=True, tag="group"):
    project_id: int
    group_type: str
    group_key: str
    properties: dict[str, Any] = {}


class ItemOp(msgspec.Struct, kw_only=True, tag="item"):
    project_id: int
    item_type: str
    item_id: str
    op: Literal["set", "delete"]
    properties: dict[str, Any] = {}


Op = Merge | Unbind | Unmerge | ProfileOp | GroupOp | ItemOp


class Rejected(msgspec.Struct):
    messageId: str | None
    error: str
    code: str = "invalid_message"


class Payload(msgspec.Struct):
    """What one request (or one import chunk) asks the store to write, in order."""

    events: list[Event] = []
    ops: list[Op] = []
    rejected: list[Rejected] = []
    accepted: int = 0  # messages taken (an operation-only message stores no event)


def stamp_merges(ops: list[Op], message_id: str) -> None:
    """Record the message that asked for the merges in ``ops`` (those without one yet)."""
    for op in ops:
        if isinstance(op, Merge) and op.message_id is None:
            op.message_id = message_id
