"""The funnel's level computation: vectorised numpy over the events that match any step.

Input, one element per event that matches at least one step, in any order: ``person`` (a 64-bit
key of the person after merges), ``t`` (microseconds) and ``mask`` (bit ``k`` set when the event
matches step ``k + 1``; bit 0 only for events inside the date range). The caller may pack time and
mask into one word, ``t << n_steps | mask`` (:func:`packable` says when it fits), which saves
work: then ``mask`` is None.

Semantics (ClickHouse ``windowFunnel`` default mode, with distinct events): a person reaches step
``k`` when distinct events ``e1..ek`` match steps ``1..k`` at times ``t1 <= ... <= tk`` with
``tk - t1 <= window``. Equal times count as in order.

How, without a Python loop over rows:

0. split the persons by their key's top bits into parts of at most :data:`PART_ROWS` rows (a
   stable radix sort on those bits), so that the random accesses below stay in the CPU caches;
   the parts are independent and run in threads (numpy releases the GIL).
1. order each part by (person, time): a stable argsort on time (the store's scan comes out as a
   few time-ordered runs, which timsort merges in about linear time), then one ``np.sort`` of
   packed 64-bit words ``(person key's top bits, time rank)`` groups the persons and keeps time
   order inside each (the rank in the low bits is the permutation). Persons whose keys share the
   top bits are then grouped by the whole key.
2. latest-start dynamic programme, one pass per step, on the rows that end a valid chain only:
   ``V_k[i] = S << b | i`` where ``S`` is the latest start (a row index: rows are in time order,
   so a later index is a later start) of a chain for steps ``1..k`` ending at row ``i``. For step
   ``k + 1`` the best predecessor of row ``i`` is the maximum of ``V_k`` over the valid rows
   before ``i``'s group of equal times (a running maximum read with ``searchsorted``) and over
   the other rows of that group (the group maximum without ``i``); its low bits are the chain's
   row for step ``k``. It is valid when it is the same person's and ``t_i - t_S <= window``.
   Keeping only the latest start is enough: later steps only measure the window from the start.
3. count: persons with a valid row at step ``k``. Conversion time to step ``k``: at the person's
   earliest completion of step ``k`` (the row of that instant with the latest start, then the
   latest step ``k - 1`` row), the time from the chain's step ``k - 1`` event to its step ``k``
   event: earliest completion, latest start, latest intermediate event.

What step 2 cannot see: inside a group of equal times it forbids only using one event for two
*adjacent* steps. An event matching two steps at least two apart (``pv -> pv -> pv``) in a group
with other events could be used twice (``x, y, x``). When such rows exist the chains found are
checked, and persons whose chain reuses an event (equal microseconds plus overlapping steps:
rare) are recomputed exactly by :func:`_exact_person` (per equal-time group, a small bipartite
matching of steps to events).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

PARALLEL_ROWS = 1_000_000  # from here on, parts in threads
PART_ROWS = 1 << 18  # rows per part, at most (2 MB per int64 array: random access stays in cache)


@dataclass
class Levels:
    """The funnel over all persons; per person arrays only when asked for (``per_person``)."""

    counts: list[int]  # persons reaching step k (index k - 1)
    step_deltas: list[np.ndarray]  # per step: seconds from the previous step (step 1: empty)
    step_persons: list[np.ndarray]  # per step: the person index of each of step_deltas' values
    person: np.ndarray | None = None  # person key of each person index
    level: np.ndarray | None = None  # deepest step reached per person (0: none)
    start_row: np.ndarray | None = None  # input row of the start of the deepest chain, -1 if none
    fallback_persons: int = 0  # persons recomputed by the exact per-person path
    seen: int = 0  # the steps matched by any row (bit k: step k + 1)


def packable(span_us: int, n_steps: int) -> bool:
    """Whether times spanning ``span_us`` (from the range start) and the mask fit one int64."""
    return span_us >= 0 and (span_us + 1) < (1 << (62 - n_steps))


def compute(
    person: np.ndarray,
    t: np.ndarray,
    mask: np.ndarray | None,
    n_steps: int,
    window_us: int,
    *,
    per_person: bool = False,
    threads: int | None = None,
) -> Levels:
    """Levels for rows in any order; ``mask`` None: ``t`` is ``time << n_steps | mask``.

    From :data:`PARALLEL_ROWS` rows (or with ``threads`` > 1) the persons are split by their key's
    top bits into parts computed by ``threads`` threads (default: the CPU count; numpy releases
    the GIL in its loops).
    """
    person = np.ascontiguousarray(person).view(np.uint64) if person.dtype != np.uint64 else person
    n = len(t)
    workers = max(threads if threads is not None else (os.cpu_count() or 1), 1)
    parts = 1
    while parts < 256 and (parts < workers or n // parts > PART_ROWS):
        parts *= 2
    if n >= PARALLEL_ROWS or (threads is not None and threads > 1):
        return _parallel(person, t, mask, n_steps, window_us, per_person, parts, workers)
    return _compute_one(person, t, mask, n_steps, window_us, per_person)


def _parallel(
    person: np.ndarray, t: np.ndarray, mask: np.ndarray | None, n_steps: int, window_us: int,
    per_person: bool, parts: int, workers: int,
) -> Levels:
    """Partition the rows by the person key's top bits (disjoint persons), compute the parts in
    threads, merge. Parts of about :data:`PART_ROWS` rows keep the random accesses inside the CPU
    caches. Each thread first partitions a slice of the input (a stable radix sort on the top
    bits keeps input order); a part is then the concatenation of its rows from every slice."""
    shift = np.uint64(64 - (parts.bit_length() - 1))
    n = len(t)
    cuts = [n * i // workers for i in range(workers + 1)]

    def split(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        lo, hi = cuts[c], cuts[c + 1]
        part = (person[lo:hi] >> shift).astype(np.uint8)
        perm = np.argsort(part, kind="stable")  # a radix sort: linear
        perm += lo
        bounds = np.r_[0, np.cumsum(np.bincount(part, minlength=parts))]
        return perm, bounds, person[perm], t[perm], None if mask is None else mask[perm]

    with ThreadPoolExecutor(workers) as pool:
        pieces = list(pool.map(split, range(workers)))
        perms, bounds, persons, times, masks = (list(x) for x in zip(*pieces, strict=True))

        def one(j: int) -> tuple[np.ndarray, Levels]:
            def take(arrays: list[Any]) -> np.ndarray:
                return np.concatenate([a[b[j]:b[j + 1]] for a, b in zip(arrays, bounds, strict=True)])

            m = None if mask is None else take(masks)
            return take(perms), _compute_one(take(persons), take(times), m, n_steps, window_us, per_person)

        done = list(pool.map(one, range(parts)))
    out = Levels(
        counts=[sum(lv.counts[k] for _, lv in done) for k in range(n_steps)],
        step_deltas=[np.concatenate([lv.step_deltas[k] for _, lv in done]) for k in range(n_steps)],
        step_persons=[],
        fallback_persons=sum(lv.fallback_persons for _, lv in done),
        seen=int(np.bitwise_or.reduce([lv.seen for _, lv in done])),
    )
    if not per_person:
        out.step_persons = [np.concatenate([lv.step_persons[k] for _, lv in done]) for k in range(n_steps)]
        return out
    offsets = np.cumsum([0] + [len(lv.person) for _, lv in done if lv.person is not None])
    out.step_persons = [
        np.concatenate([lv.step_persons[k] + offsets[i] for i, (_, lv) in enumerate(done)]) for k in range(n_steps)
    ]
    out.person = np.concatenate([lv.person for _, lv in done if lv.person is not None])
    out.level = np.concatenate([lv.level for _, lv in done if lv.level is not None])
    starts = []
    for idx, lv in done:
        assert lv.start_row is not None
        starts.append(np.where(lv.start_row >= 0, idx[np.maximum(lv.start_row, 0)], -1))
    out.start_row = np.concatenate(starts)
    return out


def _compute_one(
    person: np.ndarray, t: np.ndarray, mask: np.ndarray | None, n_steps: int, window_us: int, per_person: bool,
) -> Levels:
    n = len(t)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Levels(
            counts=[0] * n_steps, step_deltas=[empty.astype(float)] * n_steps, step_persons=[empty] * n_steps,
            person=person[:0] if per_person else None, level=np.zeros(0, np.int8) if per_person else None,
            start_row=empty if per_person else None,
        )
    mtype = _mask_type(n_steps)
    if mask is None:
        by_time, rank, key, word = _order_packed(person, t)
        ms = (word & ((1 << n_steps) - 1)).astype(mtype)
        word >>= n_steps
        ts = word
    else:
        by_time, rank = np.lexsort((t, person)), None
        key = person[by_time]
        ts = t[by_time].astype(np.int64)
        ms = mask[by_time].astype(mtype)
    out = _levels(key, ts, ms, n_steps, window_us, per_person)
    if per_person and out.start_row is not None:
        has = out.start_row >= 0
        at = out.start_row[has]
        out.start_row[has] = by_time[at if rank is None else rank[at]]
    return out


def _mask_type(n_steps: int) -> type[np.unsignedinteger]:
    return np.uint8 if n_steps <= 8 else np.uint16 if n_steps <= 16 else np.uint32


def _order_packed(person: np.ndarray, word: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by person, in time order inside each: ``(by_time, rank, keys, words)``, the
    permutation being ``by_time[rank]``.

    A stable argsort on time first: the store's scan comes out as a few time-ordered runs (one
    per thread), which timsort merges in about linear time. Then one ``np.sort`` of packed words
    ``(key's top bits, time rank)`` groups the persons and keeps their time order (the rank in
    the low bits is the permutation). Persons sharing the top bits are then grouped by full key.
    """
    n = len(word)
    by_time = np.argsort(word, kind="stable")
    keys = person[by_time]
    words = word[by_time]
    bits = max(int(n - 1).bit_length(), 1)
    low = np.uint64((1 << bits) - 1)
    packed = keys & ~low
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    rank = (packed & low).astype(np.int64)
    key = keys[rank]
    packed &= ~low
    split = np.flatnonzero((key[1:] != key[:-1]) & (packed[1:] == packed[:-1]))
    if len(split):  # persons sharing the top bits interleave: group them by the whole key
        rows = np.flatnonzero(np.isin(packed, np.unique(packed[split])))
        sub = np.argsort(key[rows], kind="stable")
        rank[rows], key[rows] = rank[rows][sub], key[rows][sub]
    return by_time, rank, key, words[rank]


def _levels(key: np.ndarray, ts: np.ndarray, ms: np.ndarray, n_steps: int, window_us: int, per_person: bool) -> Levels:
    """The dynamic programme on rows sorted by (person, time).

    Per step only the valid rows are kept (``rows`` ascending, ``vals`` = their V): the best
    predecessor of a candidate is the running maximum of ``vals`` up to the last valid row before
    the candidate's group of equal times (``searchsorted``), so no pass over all rows per step.
    """
    n = len(ts)
    b = max(int(n).bit_length(), 1)
    low = (1 << b) - 1
    newp = np.empty(n, dtype=bool)
    newp[0] = True
    np.not_equal(key[1:], key[:-1], out=newp[1:])
    pstart = np.flatnonzero(newp)
    ps = np.repeat(pstart, np.diff(np.r_[pstart, n]))  # each row's person's first row
    same = np.zeros(n, dtype=bool)  # row has the time of the row before, same person
    np.equal(ts[1:], ts[:-1], out=same[1:])
    same &= ~newp
    ties = bool(same.any())
    gs = multi = m_starts = m_idx = None
    check_reuse = False
    if ties:
        gstarts = np.flatnonzero(~same)
        glen = np.diff(np.r_[gstarts, n])
        gs = np.repeat(gstarts, glen)  # each row's group's first row
        multi = np.flatnonzero(np.repeat(glen > 1, glen))  # rows in groups of two or more
        mg = gs[multi]
        mnew = np.r_[True, mg[1:] != mg[:-1]]
        m_starts = np.flatnonzero(mnew)
        m_idx = np.cumsum(mnew) - 1
        # an event matching two steps >= 2 apart in a group of equal times: a chain may reuse it
        check_reuse = n_steps >= 3 and bool(_nonadjacent(ms[multi], n_steps).any())

    out = Levels(counts=[], step_deltas=[], step_persons=[], seen=int(np.bitwise_or.reduce(ms)))
    firsts: list[np.ndarray] = []  # per step: each reaching person's first completion row
    kept: list[tuple[np.ndarray, np.ndarray]] = []  # per step (rows, previous rows), for the check
    start_of = np.full(n, -1, dtype=np.int64) if per_person else None  # by person's first row
    deepest = np.zeros(n, dtype=np.int8) if per_person else None
    rows = np.flatnonzero(ms & 1)
    prev = rows
    vals = (rows << b) | rows
    for k in range(n_steps):
        if k and len(rows):
            cand = np.flatnonzero(ms & (1 << k))
            g0 = cand if gs is None else gs[cand]
            pos = np.searchsorted(rows, g0) - 1  # the last valid row before the group
            best = np.maximum.accumulate(vals)[pos]
            best[pos < 0] = -1
            if gs is not None and multi is not None:
                # the other rows of the group: group maximum without the row itself
                vm = np.full(len(multi), -1, dtype=np.int64)
                at = np.searchsorted(multi, rows)
                hit = at < len(multi)
                hit[hit] = multi[at[hit]] == rows[hit]
                vm[at[hit]] = vals[hit]
                gmax = np.maximum.reduceat(vm, m_starts)
                top = vm == gmax[m_idx]
                gsecond = np.maximum.reduceat(np.where(top, -1, vm), m_starts)
                others = np.where(top, gsecond[m_idx], gmax[m_idx])  # valid values are unique
                at = np.searchsorted(multi, cand)
                hit = at < len(multi)
                hit[hit] = multi[at[hit]] == cand[hit]
                best[hit] = np.maximum(best[hit], others[at[hit]])
            s = best >> b  # -1 when none
            ok = s >= ps[cand]
            ok &= ts[cand] - ts[s] <= window_us
            rows = cand[ok]
            prev = best[ok] & low  # the chain's row for the step before
            vals = (s[ok] << b) | rows
        elif k:
            rows = prev = vals = rows[:0]
        if check_reuse:
            kept.append((rows, prev))
        pos = _first_completions(rows, vals, ps, gs)
        first = rows[pos]
        firsts.append(first)
        out.counts.append(len(first))
        out.step_persons.append(ps[first])
        if k:
            out.step_deltas.append((ts[first] - ts[prev[pos]]) / 1e6)
        else:
            out.step_deltas.append(np.zeros(0))
            out.step_persons[0] = out.step_persons[0][:0]
        if per_person:
            assert start_of is not None and deepest is not None
            start_of[ps[first]] = vals[pos] >> b
            deepest[ps[first]] = k + 1

    if check_reuse:
        bad = _reusing_persons(firsts, kept, ps)
        if len(bad):
            out.fallback_persons = len(bad)
            _recompute(bad, pstart, n, ts, ms, n_steps, window_us, out, start_of, deepest)
    if per_person:
        assert start_of is not None and deepest is not None
        out.person = key[pstart]
        out.level = deepest[pstart]
        out.start_row = start_of[pstart]
        # step_persons: from a person's first row to its index
        out.step_persons = [np.searchsorted(pstart, p) for p in out.step_persons]
    return out


def _first_completions(rows: np.ndarray, vals: np.ndarray, ps: np.ndarray, gs: np.ndarray | None) -> np.ndarray:
    """Positions in ``rows`` of each person's earliest valid row (of that instant: the greatest V)."""
    pr = ps[rows]
    head = np.empty(len(rows), dtype=bool)
    head[:1] = True
    np.not_equal(pr[1:], pr[:-1], out=head[1:])
    seg = np.flatnonzero(head)
    if gs is None or not len(rows):
        return seg
    lens = np.diff(np.r_[seg, len(rows)])
    sel = np.flatnonzero(gs[rows] == np.repeat(gs[rows[seg]], lens))
    if len(sel) == len(seg):
        return sel
    vals = vals[sel]
    pr = ps[rows[sel]]
    seg = np.flatnonzero(np.r_[True, pr[1:] != pr[:-1]])
    best = np.repeat(np.maximum.reduceat(vals, seg), np.diff(np.r_[seg, len(sel)]))
    return sel[vals == best]  # unique: V holds the row


def _nonadjacent(ms: np.ndarray, n_steps: int) -> np.ndarray:
    out = np.zeros(len(ms), dtype=bool)
    for d in range(2, n_steps):
        out |= (ms & (ms >> d)) != 0
    return out


def _reusing_persons(firsts: list[np.ndarray], kept: list[tuple[np.ndarray, np.ndarray]], ps: np.ndarray) -> np.ndarray:
    """First rows of persons any of whose reported chains uses one event for two steps."""
    bad = []
    for k in range(2, len(firsts)):
        chain = [firsts[k]]
        for j in range(k, 0, -1):
            rows, prev = kept[j]
            chain.append(prev[np.searchsorted(rows, chain[-1])])
        hit = np.zeros(len(firsts[k]), dtype=bool)
        for a in range(len(chain)):
            for c in range(a + 2, len(chain)):
                hit |= chain[a] == chain[c]
        bad.append(ps[firsts[k][hit]])
    return np.unique(np.concatenate(bad)) if bad else np.zeros(0, dtype=np.int64)


def _recompute(
    bad: np.ndarray, pstart: np.ndarray, n: int, ts: np.ndarray, ms: np.ndarray, n_steps: int,
    window_us: int, out: Levels, start_of: np.ndarray | None, deepest: np.ndarray | None,
) -> None:
    """Replace the results of the persons (by first row) in ``bad`` by :func:`_exact_person`'s."""
    ends = dict(zip(pstart.tolist(), np.r_[pstart[1:], n].tolist(), strict=True))
    extra_p: list[list[int]] = [[] for _ in range(n_steps)]
    extra_d: list[list[float]] = [[] for _ in range(n_steps)]
    for p in bad.tolist():
        lo, hi = p, ends[p]
        firsts = _exact_person(ts[lo:hi].tolist(), ms[lo:hi].tolist(), n_steps, window_us)
        for k, chain in enumerate(firsts):
            if chain is None:
                break
            if k:
                extra_p[k].append(p)
                extra_d[k].append((int(ts[lo + chain[-1]]) - int(ts[lo + chain[-2]])) / 1e6)
            if start_of is not None and deepest is not None:
                start_of[p] = lo + chain[0]
                deepest[p] = k + 1
        if deepest is not None and firsts[0] is None:
            deepest[p] = 0
    for k in range(n_steps):
        was = np.isin(out.step_persons[k], bad) if k else np.zeros(0, dtype=bool)
        if k:
            out.step_persons[k] = np.r_[out.step_persons[k][~was], np.array(extra_p[k], dtype=np.int64)]
            out.step_deltas[k] = np.r_[out.step_deltas[k][~was], np.array(extra_d[k])]
            out.counts[k] = len(out.step_persons[k])
    # step 1 (no reuse possible with one event) keeps its count


def _match(group: list[tuple[int, int]], first: int, last: int) -> list[int] | None:
    """Distinct rows of ``group`` ((row, mask) pairs) for steps ``first..last`` (0-based), or None."""
    owner: dict[int, int] = {}  # row -> step

    def assign(step: int, seen: set[int]) -> bool:
        for row, m in group:
            if (m >> step) & 1 and row not in seen:
                seen.add(row)
                if row not in owner or assign(owner[row], seen):
                    owner[row] = step
                    return True
        return False

    for step in range(first, last + 1):
        if not assign(step, set()):
            return None
    by_step = {s: r for r, s in owner.items()}
    return [by_step[s] for s in range(first, last + 1)]


def _exact_person(ts: list[int], ms: list[int], n_steps: int, window_us: int) -> list[list[int] | None]:
    """Per step, the rows of one person's reported chain (earliest completion), or None.

    Group by group of equal times: the chains ending in a group extend the best chain of level
    ``c`` before it (latest start; ``c = 0``: a new chain) by steps ``c+1..d`` matched to distinct
    events of the group.
    """
    best: list[tuple[int, list[int]] | None] = [None] * (n_steps + 1)  # level -> (start, rows)
    first: list[list[int] | None] = [None] * n_steps
    i = 0
    while i < len(ts):
        j = i
        while j < len(ts) and ts[j] == ts[i]:
            j += 1
        group = [(r, ms[r]) for r in range(i, j)]
        now = ts[i]
        found: list[tuple[int, list[int]] | None] = [None] * (n_steps + 1)
        for d in range(1, n_steps + 1):
            for c in range(d):  # the lowest feasible c has the latest start
                if c == 0:
                    start, rows = now, []
                else:
                    prev = best[c]
                    if prev is None or now - prev[0] > window_us:
                        continue
                    start, rows = prev
                got = _match(group, c, d - 1)
                if got is not None:
                    found[d] = (start, rows + got)
                    break
        for d in range(1, n_steps + 1):
            f = found[d]
            if f is not None:
                cur = best[d]
                if cur is None or f[0] >= cur[0]:
                    best[d] = f
                if first[d - 1] is None:
                    first[d - 1] = f[1]
        i = j
    return first
