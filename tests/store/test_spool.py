"""The spool: acknowledged writes survive in fsynced segments and are loaded into DuckDB exactly once.

These run the writer in spool mode on a real DuckDB file; ``test_durability.py`` kills a real server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from userloop.ingest.event import Event, Merge, Payload, ProfileOp
from userloop.store import spool as spool_mod
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
_lines = msgspec.json.Encoder().encode_lines


def ev(pid: int, mid: str, did: str, props: object = "{}") -> Event:
    return Event(project_id=pid, message_id=mid, event="pv", type="track", distinct_id=did,
                 timestamp=NOW, received_at=NOW, properties=props)


def stored(s: Store, pid: int) -> dict[str, tuple[str, str]]:
    rows = s.query("SELECT message_id, distinct_id, properties FROM events WHERE project_id = ?", [pid])
    return {r["message_id"]: (r["distinct_id"], json.loads(r["properties"])) for r in rows}


def test_acknowledged_then_readable_after_sync(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    pid = s.create_project("p").id
    w = Writer(s, spool_dir=s.spool_dir).start()
    try:
        raw = msgspec.Raw(b'{"plan": "pro", "n": [1, 2]}')  # bytes as received by the typed decoder
        for i in range(5):
            w.write(Payload(events=[ev(pid, f"m{i}", f"u{i % 2}", raw if i == 0 else f'{{"i": {i}}}')]))
        assert w.sync()
        assert not w.pending()
        got = stored(s, pid)
        assert got == {"m0": ("u0", {"plan": "pro", "n": [1, 2]}), "m1": ("u1", {"i": 1}), "m2": ("u0", {"i": 2}),
                       "m3": ("u1", {"i": 3}), "m4": ("u0", {"i": 4})}
        persons = s.query("SELECT count(DISTINCT person_id) AS n FROM events WHERE project_id = ?", [pid])
        assert persons == [{"n": 2}]
        props = s.query("SELECT property FROM event_properties WHERE project_id = ? ORDER BY 1", [pid])
        assert [r["property"] for r in props] == ["i", "n", "plan"]
    finally:
        w.stop()
    assert list(s.spool_dir.iterdir()) == []  # loaded segments are deleted
    s.close()


def test_acknowledged_events_are_loaded_within_a_second_without_a_reader(tmp_path: Path) -> None:
    """The loader lets a segment grow (250 ms by default), then stores it on its own."""
    import time

    s = Store(tmp_path / "l.duckdb")
    pid = s.create_project("p").id
    with Writer(s, spool_dir=s.spool_dir) as w:
        t0 = time.monotonic()
        w.write(Payload(events=[ev(pid, "x1", "u")]))  # acknowledged: in the spool
        while not stored(s, pid) and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        waited = time.monotonic() - t0
        assert stored(s, pid) == {"x1": ("u", {})}
        assert 0.2 <= waited < 1.0  # the segment was given its 250 ms to grow, then loaded
    s.close()


def test_duplicates_in_a_segment_and_against_stored_rows_are_stored_once(tmp_path: Path) -> None:
    s = Store(tmp_path / "d.duckdb")
    pid = s.create_project("p").id
    with Writer(s, spool_dir=s.spool_dir) as w:
        w.write(Payload(events=[ev(pid, "a", "u"), ev(pid, "b", "u")]))
        w.sync()
        # a retry of "a" plus "c" twice in one request: the unchecked insert fails, the checked one runs
        w.write(Payload(events=[ev(pid, "a", "u"), ev(pid, "c", "v"), ev(pid, "c", "v")]))
        w.sync()
        rows = s.query("SELECT message_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1")
        assert rows == [{"message_id": "a", "n": 1}, {"message_id": "b", "n": 1}, {"message_id": "c", "n": 1}]
    s.close()


def test_a_crashed_spool_is_replayed_once_on_open(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    s = Store(db)
    pid = s.create_project("p").id
    s.close()
    # what a server that died after acknowledging leaves behind: two segments, the second torn
    d = spool_mod.spool_dir_for(db)
    assert d is not None
    sp = spool_mod.Spool(d, 1)
    ops = [ProfileOp(project_id=pid, distinct_id="u1", op="increment", properties={"visits": 2}),
           Merge(project_id=pid, distinct_id="u1", other_id="anon")]
    sp.append(_lines([ev(pid, "x1", "anon"), ev(pid, "x2", "u1")]), 2, _lines(ops), 2)
    sp.sync()
    assert sp.rotate(1) is not None
    sp.append(_lines([ev(pid, "x3", "u2")]), 1, b"", 0)
    sp.sync()
    sp.close()
    with open(d / "00000002.events.ndjson", "ab") as fh:
        fh.write(b'{"project_id": 1, "message_id": "torn"')  # a write the crash interrupted

    s = Store(db)  # opening the file replays the spool
    got = stored(s, pid)
    assert sorted(got) == ["x1", "x2", "x3"]
    people = s.query("SELECT distinct_id, person_id FROM identities WHERE project_id = ? ORDER BY 1", [pid])
    by_id = {r["distinct_id"]: r["person_id"] for r in people}
    assert by_id["anon"] == by_id["u1"] != by_id["u2"]
    visits = s.query(
        "SELECT p.properties FROM persons p JOIN identities i USING (project_id, person_id) "
        "WHERE i.distinct_id = 'u1'"
    )
    assert json.loads(visits[0]["properties"]) == {"visits": 2}
    assert list(d.iterdir()) == []
    s.close()

    # a segment already loaded (its number <= the committed watermark) is never applied again,
    # e.g. when the process died between COMMIT and deleting the files
    sp = spool_mod.Spool(d, 2)
    sp.append(b"", 0, _lines([ProfileOp(project_id=pid, distinct_id="u1", op="increment", properties={"visits": 2})]), 1)
    sp.sync()
    sp.close()
    s = Store(db)
    visits = s.query(
        "SELECT p.properties FROM persons p JOIN identities i USING (project_id, person_id) "
        "WHERE i.distinct_id = 'u1'"
    )
    assert json.loads(visits[0]["properties"]) == {"visits": 2}
    assert list(d.iterdir()) == []
    s.close()


def test_imports_wait_for_earlier_acknowledged_events(tmp_path: Path) -> None:
    """An Arrow import in spool mode is stored after what was acknowledged before it, then resolves."""
    from userloop.store.writer import events_to_arrow

    s = Store(tmp_path / "i.duckdb")
    pid = s.create_project("p").id
    with Writer(s, spool_dir=s.spool_dir) as w:
        w.write(Payload(events=[ev(pid, "live", "u")]))
        result = w.submit_table(events_to_arrow([ev(pid, "imp", "u"), ev(pid, "live", "u")])).result()
        assert result.stored == 1  # "live" was already stored when the import ran
        assert sorted(stored(s, pid)) == ["imp", "live"]
    s.close()
