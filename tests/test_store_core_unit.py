"""Unit tests of the object store core (sans-IO): exact event sequences in, effects
out: create, seal, get, release, delete; replicas evicted before primaries are spilled;
restore; readers asked for the pins they keep; store full; random sequences."""
from __future__ import annotations

import os
import random

import pytest

from raylab.exceptions import ObjectStoreFullError, ReferenceCountingAssertionError
from raylab.object_store import (PAGE_SIZE, Created, DeleteFile, Evict, Failed,
                                 ObjectStoreCore, Ready, Reclaim, Restore, Spill)

P = PAGE_SIZE


def oid(n):
    return b"obj-%02d" % n


def stored(core, n, size=P, primary=True, now=None):
    (eff,) = core.create(oid(n), size, "owner-addr", primary, client="w1", now=now)
    assert isinstance(eff, Created) and eff.size == size
    core.seal(oid(n), now=now)
    return eff.offset


def test_create_seal_get_release_delete():
    core = ObjectStoreCore(4 * P, spill_dir="/spill")
    off = stored(core, 1, size=100)
    assert core.get(oid(1), "reader") == [Ready(oid(1), off, 100, "reader")]
    info, = core.contents()
    assert (info.object_id, info.size, info.owner, info.primary, info.pinned, info.spilled) == \
        (oid(1), 100, "owner-addr", True, 1, False)
    assert core.release(oid(1), "reader") == []
    assert core.delete(oid(1)) == []
    assert core.usage().used == 0 and core.contents() == []
    with pytest.raises(KeyError):
        core.get(oid(1), "reader")


def test_get_before_seal_waits_for_seal():
    core = ObjectStoreCore(4 * P)
    (created,) = core.create(oid(1), P, "o", client="w1")
    assert core.get(oid(1), "r1") == [] and core.get(oid(1), "r2") == []
    assert core.seal(oid(1)) == [Ready(oid(1), created.offset, P, "r1"),
                                 Ready(oid(1), created.offset, P, "r2")]


def test_replicas_are_evicted_before_primaries_are_spilled():
    core = ObjectStoreCore(3 * P, spill_dir="/spill")
    stored(core, 1, now=1)                  # primary, oldest
    stored(core, 2, primary=False, now=2)   # replica
    stored(core, 3, primary=False, now=3)   # replica
    core.get(oid(2), "r", now=4)            # replica 2 is now recently used ...
    core.release(oid(2), "r")
    # ... so the least recently used replica (3) goes first, and no primary.
    effects = core.create(oid(4), P, "o", client="w1", now=5)
    assert effects[0] == Evict(oid(3), P, False)
    assert isinstance(effects[1], Created)
    core.seal(oid(4), now=5)
    assert core.create(oid(5), P, "o", client="w1", now=6)[0] == Evict(oid(2), P, False)
    core.seal(oid(5), now=6)
    # Only primaries are left: the least recently used one is spilled.
    assert core.create(oid(6), P, "o", client="w1", now=7) == \
        [Spill(oid(1), 0, P, os.path.join("/spill", oid(1).hex()))]


def test_spill_then_create_proceeds_then_restore_on_get():
    core = ObjectStoreCore(2 * P, spill_dir="/spill")
    off1 = stored(core, 1)
    stored(core, 2)
    path1 = os.path.join("/spill", oid(1).hex())
    assert core.create(oid(3), P, "o", client="w3") == [Spill(oid(1), off1, P, path1)]
    assert core.usage().waiting_requests == 1
    # Reads of a spilling object still work (it is in memory until spilled).
    assert core.get(oid(1), "r") == [Ready(oid(1), off1, P, "r")]
    core.release(oid(1), "r")
    assert core.spilled(oid(1)) == [Created(oid(3), off1, P, "w3")]
    assert [i.spilled for i in core.contents()] == [True, False, False]
    core.seal(oid(3))
    # get of the spilled object: make room (spill 2), then restore, then Ready.
    assert core.get(oid(1), "r") == [Spill(oid(2), P, P, os.path.join("/spill", oid(2).hex()))]
    assert core.spilled(oid(2)) == [Restore(oid(1), P, P, path1)]
    assert core.get(oid(1), "r2") == []  # joins the restore in flight
    assert core.restored(oid(1)) == [Ready(oid(1), P, P, "r"), Ready(oid(1), P, P, "r2")]
    # Restored objects keep their file: dropping them again needs no IO.
    core.release(oid(1), "r")
    core.release(oid(1), "r2")
    effects = core.create(oid(4), P, "o", client="w1")
    assert effects[0] == Spill(oid(3), 0, P, os.path.join("/spill", oid(3).hex()))


def test_restored_object_is_dropped_without_writing_again():
    core = ObjectStoreCore(P, spill_dir="/s")
    stored(core, 1, now=1)
    core.create(oid(2), P, "o", client="w", now=2)  # spills 1
    core.spilled(oid(1))
    core.seal(oid(2), now=2)
    core.delete(oid(2))
    core.get(oid(1), "r", now=3)  # restores 1 (room is free now)
    core.restored(oid(1))
    core.release(oid(1), "r")
    assert core.create(oid(3), P, "o", client="w", now=4)[0] == Evict(oid(1), P, True)
    assert core.contents()[0].spilled


def test_full_waits_for_readers_and_fails_only_when_given_up():
    core = ObjectStoreCore(2 * P)
    stored(core, 1)
    core.create(oid(2), P, "o", client="w")  # unsealed: being written, not a victim
    core.get(oid(1), "r")                     # pinned by a reader
    # waits: the reader may let go (asked to, if its read is over and it kept the pin)
    assert core.create(oid(3), P, "o", client="w") == [Reclaim(oid(1), ("r",))]
    assert core.usage().waiting_requests == 1
    effects = core.give_up(oid(3), "w")       # the shell's timeout ran out
    assert len(effects) == 1 and isinstance(effects[0], Failed)
    msg = str(effects[0].error)
    assert str(P) in msg and "pinned by readers" in msg and "being written" in msg
    assert core.usage().waiting_requests == 0
    assert core.create(oid(4), P, "o", client="w") == []   # waits again (asked already) ...
    assert isinstance(core.release(oid(1), "r")[0], Spill)  # ... and a release makes room


def test_full_at_once_when_nothing_could_ever_be_freed():
    core = ObjectStoreCore(2 * P)
    stored(core, 1)
    stored(core, 2)
    core.get(oid(1), "r")
    with pytest.raises(ObjectStoreFullError):
        core.create(oid(3), 3 * P // 2 + P, "o", client="w")  # bigger than all but nothing


def test_object_bigger_than_store():
    core = ObjectStoreCore(4 * P)
    with pytest.raises(ObjectStoreFullError, match=f"{5 * P} bytes, larger than .*{4 * P} bytes"):
        core.create(oid(1), 5 * P, "o")
    with pytest.raises(ValueError, match="already"):
        stored(core, 2)
        core.create(oid(2), P, "o")


def test_pinned_during_spill_stays_in_memory_and_waiter_waits():
    core = ObjectStoreCore(P, spill_dir="/s")
    stored(core, 1)
    assert isinstance(core.create(oid(2), P, "o", client="w2")[0], Spill)
    core.get(oid(1), "r")  # pinned while being written out
    # stays in memory; the create keeps waiting, and the reader is asked for its pin
    assert core.spilled(oid(1)) == [Reclaim(oid(1), ("r",))]
    assert core.contents()[0].state == "sealed"
    effects = core.give_up(oid(2), "w2")
    assert effects[0].client == "w2" and isinstance(effects[0].error, ObjectStoreFullError)


def test_spilled_file_deleted_when_freed():
    core = ObjectStoreCore(P, spill_dir="/s")
    stored(core, 1)
    core.create(oid(2), P, "o", client="w")
    core.spilled(oid(1))
    assert core.delete(oid(1)) == [DeleteFile(os.path.join("/s", oid(1).hex()))]
    assert core.shutdown() == []


def test_delete_while_spilling_and_while_pinned():
    core = ObjectStoreCore(2 * P, spill_dir="/s")
    stored(core, 1)
    stored(core, 2)
    core.get(oid(2), "r")
    core.create(oid(3), P, "o", client="w")  # spills 1
    assert core.delete(oid(1)) == []        # still being written to disk
    assert core.spilled(oid(1)) == [DeleteFile(os.path.join("/s", oid(1).hex())),
                                    Created(oid(3), 0, P, "w")]
    assert core.delete(oid(2)) == [Reclaim(oid(2), ("r",))]   # pinned: stays until released
    assert [i.object_id for i in core.contents()] == [oid(3)]
    assert core.release(oid(2), "r") == []
    assert core.usage().used == P


def test_readers_are_asked_for_pins_they_may_keep_and_may_say_busy():
    core = ObjectStoreCore(2 * P, spill_dir="/s")
    stored(core, 1)
    stored(core, 2)
    core.get(oid(1), "r1")
    core.get(oid(1), "r2")
    core.get(oid(2), "r1")                       # 1 is the least recently used
    assert core.create(oid(3), P, "o", client="w") == [Reclaim(oid(1), ("r1", "r2"))]
    assert core.release(oid(1), "r1") == []      # r2 has not answered yet
    assert core.busy(oid(1), "r2") == [Reclaim(oid(2), ("r1",))]   # still reading: next
    assert core.release(oid(2), "r1") == [Spill(oid(2), P, P, os.path.join("/s", oid(2).hex()))]
    assert core.spilled(oid(2)) == [Created(oid(3), P, P, "w")]
    core.seal(oid(3))
    core.get(oid(3), "r1")
    assert core.delete(oid(3)) == [Reclaim(oid(3), ("r1",))]   # freed: pins come back
    assert core.release(oid(3), "r1") == [] and oid(3) not in core.objects
    assert core.release(oid(1), "r2") == [] and not core.objects[oid(1)].busy


def test_a_kept_pin_does_not_put_a_replica_before_a_primary():
    core = ObjectStoreCore(2 * P, spill_dir="/s")
    stored(core, 1, now=1)                       # primary, least recently used
    stored(core, 2, primary=False, now=2)        # replica, read recently: pin kept
    core.get(oid(2), "w", now=3)
    assert core.create(oid(3), P, "o", client="x", now=4) == [Reclaim(oid(2), ("w",))]
    assert core.release(oid(2), "w") == [Evict(oid(2), P, False), Created(oid(3), P, P, "x")]
    core.seal(oid(3))
    stored_again = ObjectStoreCore(2 * P, spill_dir="/s")  # the same, but still read
    stored(stored_again, 1, now=1)
    stored(stored_again, 2, primary=False, now=2)
    stored_again.get(oid(2), "w", now=3)
    stored_again.create(oid(3), P, "o", client="x", now=4)
    assert stored_again.busy(oid(2), "w") == [Spill(oid(1), 0, P, os.path.join("/s", oid(1).hex()))]


def test_delete_fails_waiting_gets():
    core = ObjectStoreCore(2 * P)
    core.create(oid(1), P, "o", client="w")
    core.get(oid(1), "r")
    (failed,) = core.delete(oid(1))
    assert failed.client == "r" and isinstance(failed.error, ReferenceCountingAssertionError)
    assert core.seal(oid(1)) == [] and core.usage().used == 0


def test_spill_failure_keeps_object_and_fails_request():
    core = ObjectStoreCore(P, spill_dir="/s")
    stored(core, 1)
    core.create(oid(2), P, "o", client="w")
    effects = core.spill_failed(oid(1))
    assert effects[0] == DeleteFile(os.path.join("/s", oid(1).hex()))
    assert isinstance(effects[1], Failed) and effects[1].client == "w"
    assert core.contents()[0].state == "sealed"


def test_restore_failure_fails_the_gets():
    core = ObjectStoreCore(P, spill_dir="/s")
    stored(core, 1)
    core.create(oid(2), P, "o", client="w")
    core.spilled(oid(1))
    core.seal(oid(2))
    core.delete(oid(2))
    core.get(oid(1), "r")
    err = OSError("disk gone")
    assert core.restore_failed(oid(1), err) == [Failed(oid(1), "r", err)]
    assert core.usage().used == 0 and core.contents()[0].spilled


def test_disconnect_drops_pins_and_unsealed_objects():
    core = ObjectStoreCore(2 * P)
    stored(core, 1)
    core.get(oid(1), "dead")
    core.create(oid(2), P, "o", client="dead")
    core.delete(oid(1))  # pinned by the dead client: deferred
    assert core.disconnect("dead") == []
    assert core.contents() == [] and core.usage().used == 0


def test_shutdown_deletes_every_spill_file():
    core = ObjectStoreCore(P, spill_dir="/s")
    stored(core, 1)
    core.create(oid(2), P, "o", client="w")
    core.spilled(oid(1))
    assert core.shutdown() == [DeleteFile(os.path.join("/s", oid(1).hex()))]


class FakeShell:
    """Carries out a core's effects without memory or files, to check its bookkeeping."""

    def __init__(self, core):
        self.core, self.io, self.pins, self.files = core, [], [], set()
        self.asked = []   # (object, client) the store asked for a pin

    def do(self, effects):
        for eff in effects:
            if isinstance(eff, Spill):
                self.io.append(("spill", eff.object_id))
                self.files.add(eff.path)
            elif isinstance(eff, Restore):
                self.io.append(("restore", eff.object_id))
            elif isinstance(eff, Ready):
                self.pins.append((eff.object_id, eff.client))
            elif isinstance(eff, DeleteFile):
                self.files.discard(eff.path)
            elif isinstance(eff, Reclaim):
                assert all((eff.object_id, c) in self.pins for c in eff.clients)
                self.asked += [(eff.object_id, c) for c in eff.clients]

    def finish_io(self, rng, fail=False):
        kind, object_id = self.io.pop(rng.randrange(len(self.io)))
        if kind == "spill":
            self.do(self.core.spill_failed(object_id) if fail else self.core.spilled(object_id))
        else:
            self.do(self.core.restore_failed(object_id, OSError("x")) if fail
                    else self.core.restored(object_id))

    def check(self):
        core = self.core
        in_memory = [e for e in core.objects.values() if e.offset is not None]
        assert core.allocator.used == sum(core.allocator.rounded(e.size) for e in in_memory)
        assert all((e.offset is None) == (e.state == "spilled") for e in core.objects.values())
        # A request only waits while spills are being written or readers/writers hold
        # blocks that would make room (else it would wait for ever).
        assert not core.queue or any(e.state == "spilling" or e.pinned or e.state == "created"
                                     for e in core.objects.values())
        for e in core.objects.values():
            for c, n in e.pins.items():
                assert self.pins.count((e.object_id, c)) == n
        assert self.files <= {e.spill_path for e in core.objects.values()}


@pytest.mark.parametrize("seed", range(5))
def test_random_event_sequences_keep_the_books_straight(seed):
    rng = random.Random(seed)
    core = ObjectStoreCore(12 * P, spill_dir="/s")
    shell, clients, n = FakeShell(core), ["a", "b", "c"], 0
    for _ in range(600):
        op = rng.random()
        known = list(core.objects)
        try:
            if op < 0.25:
                n += 1
                shell.do(core.create(oid(n), rng.randrange(1, 4 * P), "o", rng.random() < 0.6,
                                     client=rng.choice(clients)))
            elif op < 0.4 and known:
                e = core.objects[rng.choice(known)]
                if e.state == "created":
                    shell.do(core.seal(e.object_id))
            elif op < 0.55 and known:
                shell.do(core.get(rng.choice(known), rng.choice(clients)))
            elif op < 0.7 and shell.pins:
                shell.do(core.release(*shell.pins.pop(rng.randrange(len(shell.pins)))))
            elif op < 0.75 and known:
                shell.do(core.delete(rng.choice(known)))
            elif op < 0.8 and shell.asked:  # a reader asked for its pin still uses it
                shell.do(core.busy(*shell.asked.pop(rng.randrange(len(shell.asked)))))
            elif op < 0.97 and shell.io:
                shell.finish_io(rng, fail=rng.random() < 0.1)
            elif op >= 0.97:
                gone = rng.choice(clients)
                shell.pins = [p for p in shell.pins if p[1] != gone]
                shell.do(core.disconnect(gone))
        except (ObjectStoreFullError, KeyError):
            pass
        shell.check()
    # Wind down: finish IO, release every pin, seal and delete everything
    # (deleting makes room, so waiting creates are granted: go round again).
    for _ in range(100):
        while shell.io:
            shell.finish_io(rng)
        for pin in shell.pins:
            shell.do(core.release(*pin))
        shell.pins.clear()
        for object_id in list(core.objects):
            if object_id in core.objects and core.objects[object_id].state == "created":
                shell.do(core.seal(object_id))
            shell.do(core.delete(object_id))
        if not (core.objects or core.queue or shell.io):
            break
    shell.check()
    assert core.objects == {} and core.usage().used == 0 and shell.files == set()
