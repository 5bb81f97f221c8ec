"""EmbeddedPolicyStore: diffing writes, deletions, changes after a revision, compaction,
snapshots, and waking waiters on commit."""

from __future__ import annotations

import asyncio
import threading

import pytest

from neutrino.db.engine import Database
from neutrino.distribution.store import EmbeddedPolicyStore, RevisionTooOld
from neutrino.policy.model import Document, TunnelPolicy, item_key


def tunnel(chassis: str, peer: str, ip: str) -> tuple[str, Document]:
    return item_key(chassis, "tunnel", peer), TunnelPolicy(id=peer, ip=ip)


def docs(*items: tuple[str, Document]) -> dict[str, Document]:
    return dict(items)


def test_apply_writes_only_changed_items_and_marks_removed_ones_deleted(db: Database) -> None:
    store = EmbeddedPolicyStore(db)
    a, b, c = tunnel("h1", "h2", "10.0.0.2"), tunnel("h1", "h3", "10.0.0.3"), tunnel("h1", "h4", "10.0.0.4")
    assert store.apply("h1", docs(a, b), 1) == sorted([a[0], b[0]])
    store.commit(1)
    assert store.apply("h1", docs(a, b), 2) == []  # nothing changed: nothing written
    b2 = tunnel("h1", "h3", "10.0.0.33")
    assert store.apply("h1", docs(b2, c), 3) == sorted([a[0], b[0], c[0]])
    store.commit(3)
    assert store.changes_since("h1", 1) == [
        (a[0], 3, None),
        (b[0], 3, {"id": "h3", "ip": "10.0.0.33", "encap": "geneve"}),
        (c[0], 3, {"id": "h4", "ip": "10.0.0.4", "encap": "geneve"}),
    ]
    assert store.changes_since("h1", 3) == []
    revision, items = store.snapshot("h1")
    assert revision == 3
    assert set(items) == {b[0], c[0]}
    assert store.known_chassis() == {"h1"}


def test_items_of_other_chassis_are_refused_and_untouched(db: Database) -> None:
    store = EmbeddedPolicyStore(db)
    store.apply("h2", docs(tunnel("h2", "h1", "10.0.0.1")), 1)
    with pytest.raises(ValueError):
        store.apply("h1", docs(tunnel("h2", "h1", "10.0.0.1")), 2)
    store.apply("h1", {}, 2)
    store.commit(2)
    assert set(store.snapshot("h2")[1]) == {item_key("h2", "tunnel", "h1")}


def test_uncommitted_revisions_are_not_visible(db: Database) -> None:
    store = EmbeddedPolicyStore(db)
    store.apply("h1", docs(tunnel("h1", "h2", "10.0.0.2")), 1)
    store.commit(1)
    store.apply("h1", docs(tunnel("h1", "h2", "10.0.0.9")), 2)
    assert store.changes_since("h1", 1) == []  # revision 2 is not committed yet
    store.commit(2)
    assert [rev for _k, rev, _d in store.changes_since("h1", 1)] == [2]


def test_compaction_forgets_old_deletions_and_refuses_older_revisions(db: Database) -> None:
    store = EmbeddedPolicyStore(db)
    a, b = tunnel("h1", "h2", "10.0.0.2"), tunnel("h1", "h3", "10.0.0.3")
    store.apply("h1", docs(a, b), 1)
    store.apply("h1", docs(b), 2)  # a deleted at 2
    store.apply("h1", {}, 3)  # b deleted at 3
    store.commit(3)
    store.compact(3)  # drops deletions before revision 3
    with pytest.raises(RevisionTooOld):
        store.changes_since("h1", 1)
    assert store.changes_since("h1", 2) == [(b[0], 3, None)]
    assert store.snapshot("h1") == (3, {})
    with pytest.raises(RevisionTooOld):  # a revision the store never reached (e.g. reset)
        store.changes_since("h1", 7)


def test_wait_for_wakes_on_commit_from_another_thread(db: Database) -> None:
    store = EmbeddedPolicyStore(db)

    async def scenario() -> tuple[bool, bool]:
        idle = await store.wait_for("h1", 0, 0.05)

        def write() -> None:
            store.apply("h1", docs(tunnel("h1", "h2", "10.0.0.2")), 1)
            store.commit(1)

        waiter = asyncio.create_task(store.wait_for("h1", 0, 5.0))
        await asyncio.sleep(0.05)
        threading.Thread(target=write).start()
        return idle, await waiter

    idle, woken = asyncio.run(scenario())
    assert (idle, woken) == (False, True)
    # already past: returns at once
    assert asyncio.run(store.wait_for("h1", 0, 5.0)) is True
    assert asyncio.run(store.wait_for("h1", 1, 0.01)) is False


def test_apply_remembers_what_it_wrote_and_a_fresh_store_reads_the_same(db: Database) -> None:
    """A store's later `apply` diffs against what it remembers (no read, no encoding of a
    document given before); a store that forgot, or another one, reads the table and reaches
    the same result; an item deleted and given again comes back over its deletion marker."""
    store = EmbeddedPolicyStore(db)
    a, b = tunnel("h1", "h2", "10.0.0.2"), tunnel("h1", "h3", "10.0.0.3")
    store.apply("h1", docs(a, b), 1)
    assert store.apply("h1", docs(a), 2) == [b[0]]  # b deleted: a marker row stays
    assert store.apply("h1", docs(a, b), 3) == [b[0]]  # and b is back, over the marker
    assert store.apply("h1", docs(a), 4) == [b[0]]
    store.forget_cached_items()
    assert store.apply("h1", docs(a, b), 5) == [b[0]]  # read afresh: marker, then back again
    equal_a = tunnel("h1", "h2", "10.0.0.2")  # equal, not the same object
    assert EmbeddedPolicyStore(db).apply("h1", docs(equal_a, b), 6) == []
    assert store.apply("h1", docs(equal_a, b), 6) == []
    store.commit(6)
    assert [(key, rev) for key, rev, _doc in store.changes_since("h1", 0)] == [(a[0], 1), (b[0], 5)]
    assert store.known_chassis() == EmbeddedPolicyStore(db).known_chassis() == {"h1"}
    store.apply("h1", {}, 7)
    assert store.known_chassis() == EmbeddedPolicyStore(db).known_chassis() == set()
