"""Unit tests of the ownership table (``ReferenceTable``), sans-IO: exact sequences of
reference events in, free/release actions out, no processes."""
from __future__ import annotations

from dataclasses import dataclass, field

from raylab.core_worker.reference_table import FREE, RELEASED, ReferenceTable

ME, OTHER, W1, W2 = "me", "other-owner", "worker-1", "worker-2"


def oid(n: int) -> bytes:
    return b"oid-%02d" % n


def actions(out):
    return [(kind, o) for kind, o, _entry in out]


@dataclass
class Spec:
    """What the table reads of a task spec kept as lineage."""
    returns: list
    args: list = field(default_factory=list)   # (kind, oid, ...); kind 1 = by reference

    def return_ids(self):
        return self.returns


def test_an_owned_object_is_freed_when_its_last_local_ref_goes():
    t = ReferenceTable(ME)
    t.add_owned(oid(1), is_put=True)
    t.add_local(oid(1), ME)
    t.add_local(oid(1), ME)
    out = []
    t.remove_local(oid(1), out)
    assert out == [] and t.get(oid(1)).local == 1
    t.remove_local(oid(1), out)
    assert actions(out) == [(FREE, oid(1))] and t.get(oid(1)) is None
    t.remove_local(oid(1), out)                 # late duplicates change nothing
    assert len(out) == 1


def test_pending_tasks_keep_their_arguments():
    t = ReferenceTable(ME)
    t.add_owned(oid(1), is_put=True)
    t.add_local(oid(1), ME)
    t.add_submitted([oid(1), oid(1)])           # two pending tasks take it
    out = []
    t.remove_local(oid(1), out)
    t.remove_submitted([oid(1)], out)
    assert out == []
    t.remove_submitted([oid(1)], out)
    assert actions(out) == [(FREE, oid(1))]


def test_borrowers_keep_an_owned_object_until_each_lets_go():
    t = ReferenceTable(ME)
    t.add_owned(oid(1), is_put=True)
    t.add_local(oid(1), ME)
    assert t.add_borrower(oid(1), W1) and t.add_borrower(oid(1), W2)
    assert not t.add_borrower(oid(1), W1)       # known already
    assert not t.add_borrower(oid(1), ME)       # the owner is no borrower
    assert not t.add_borrower(oid(9), W1)       # not ours, or gone
    out = []
    t.remove_local(oid(1), out)
    t.remove_borrower(oid(1), W1, out)
    assert out == [] and t.get(oid(1)).borrowers == {W2}
    t.remove_borrower_everywhere(W2, out)       # W2's process died
    assert actions(out) == [(FREE, oid(1))]


def test_a_borrowed_ref_is_released_to_its_owner_not_freed():
    t = ReferenceTable(ME)
    t.add_local(oid(1), OTHER)
    assert not t.get(oid(1)).owned and not t.add_borrower(oid(1), W1)
    out = []
    t.remove_local(oid(1), out)
    [(kind, o, entry)] = out
    assert (kind, o, entry.owner) == (RELEASED, oid(1), OTHER)


def test_refs_inside_an_object_live_as_long_as_it_and_then_go_with_it():
    t = ReferenceTable(ME)
    t.add_owned(oid(1), is_put=True)            # inner, ours
    t.add_local(oid(1), ME)
    t.add_owned(oid(2), is_put=True)            # outer holds inner and a borrowed ref
    t.add_local(oid(2), ME)
    t.set_contains(oid(2), [(oid(1), ME), (oid(3), OTHER)])
    out = []
    t.remove_local(oid(1), out)
    assert out == [] and t.get(oid(1)).contained_in == {oid(2)}
    t.remove_local(oid(2), out)
    assert actions(out) == [(FREE, oid(2)), (FREE, oid(1)), (RELEASED, oid(3))]
    assert t.num_objects() == 0


def test_a_task_output_kept_for_lineage_frees_its_value_but_keeps_its_entry():
    t = ReferenceTable(ME)
    spec_a = Spec([oid(1)])
    t.add_owned(oid(1), lineage=spec_a)         # a = f()
    t.add_local(oid(1), ME)
    spec_b = Spec([oid(2)], args=[(1, oid(1))])
    t.add_owned(oid(2), lineage=spec_b)         # b = g(a): its spec needs a to re-run
    t.add_local(oid(2), ME)
    t.add_lineage([oid(1)])
    out = []
    t.remove_local(oid(1), out)                 # a out of scope: value freed, entry kept
    assert actions(out) == [(FREE, oid(1))] and t.get(oid(1)).value_freed
    t.remove_local(oid(2), out)                 # b gone: its spec goes, and with it a
    assert actions(out) == [(FREE, oid(1)), (FREE, oid(2))]
    assert t.num_objects() == 0                 # a was not freed twice


def test_a_put_needed_by_lineage_stays_whole():
    t = ReferenceTable(ME)
    t.add_owned(oid(1), is_put=True)
    t.add_local(oid(1), ME)
    t.add_lineage([oid(1)])
    out = []
    t.remove_local(oid(1), out)
    assert out == [] and not t.get(oid(1)).value_freed   # a put cannot be rebuilt
    t.remove_lineage([oid(1)], out)
    assert actions(out) == [(FREE, oid(1))]
