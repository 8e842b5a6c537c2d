"""The ownership table: reference counts, borrowers, locations and lineage.

In Ray 2 the process that creates an ObjectRef *owns* the object. The owner
counts every reference to it:

- ``local``: ObjectRef instances alive in this process;
- ``submitted``: pending tasks that take it as an argument;
- ``borrowers``: other processes holding a ref (a task that received it,
  a caller that got it back inside a return value);
- ``contained_in``: live objects whose value has this ref inside.

When all four reach zero the object is *out of scope* and is freed
everywhere: the in-process store, every node's shared memory, spill files.
A process that holds a ref it does not own is a *borrower*: it counts its own
refs and tells the owner when it has none left.

The owner also records where the object's copies are (``locations``) and,
for task returns, the task spec that made it (``lineage``), so a lost object
can be rebuilt by running that task again.

This is a sans-IO core: methods change the table and return actions for the
shell (``("free", oid, entry)``, ``("released", oid, entry)``).
"""
from __future__ import annotations

FREE = "free"            # an owned object went out of scope: delete it everywhere
RELEASED = "released"    # a borrowed ref is gone here: tell the owner


class RefEntry:
    __slots__ = ("owner", "owned", "local", "submitted", "borrowers", "contained_in",
                 "contains", "lineage", "locations", "size", "is_put", "release_waiters",
                 "primary_node", "spilled", "pending", "lineage_refs", "value_freed")

    def __init__(self, owner: str, owned: bool):
        self.owner = owner
        self.owned = owned
        self.local = 0
        self.submitted = 0
        self.borrowers: set = set()
        self.contained_in: set = set()
        self.contains: list = []          # (oid, owner) of refs inside this object's value
        self.lineage = None               # the TaskSpec that creates it (task returns)
        self.locations: set = set()       # node ids holding a shared-memory copy
        self.size = 0
        self.is_put = False
        self.release_waiters: list = []   # owners waiting to hear we dropped it (borrowers)
        self.primary_node = None          # node holding the pinned primary copy
        self.spilled = False
        self.pending = owned              # task not finished yet (owned task returns)
        self.lineage_refs = 0             # specs kept as lineage that take it as an argument
        self.value_freed = False          # out of scope, value gone, kept for its lineage

    def in_scope(self) -> bool:
        return bool(self.local or self.submitted or self.borrowers or self.contained_in)


class ReferenceTable:
    def __init__(self, my_address: str):
        self.me = my_address
        self.entries: dict[bytes, RefEntry] = {}

    # -- creation ---------------------------------------------------------
    def add_owned(self, oid: bytes, lineage=None, is_put: bool = False) -> RefEntry:
        e = self.entries.get(oid)
        if e is None:
            e = self.entries[oid] = RefEntry(self.me, True)
        e.lineage = lineage
        e.is_put = is_put
        e.pending = not is_put
        return e

    def add_local(self, oid: bytes, owner: str) -> None:
        e = self.entries.get(oid)
        if e is None:
            e = self.entries[oid] = RefEntry(owner, owner == self.me)
            e.pending = False
        e.local += 1

    # -- decrements (each may put the object out of scope) -------------------
    def remove_local(self, oid: bytes, out: list) -> None:
        e = self.entries.get(oid)
        if e is None:
            return
        e.local -= 1
        if e.local <= 0:
            e.local = 0
            self._check(oid, e, out)

    def add_submitted(self, oids) -> None:
        for oid in oids:
            e = self.entries.get(oid)
            if e is not None:
                e.submitted += 1

    def remove_submitted(self, oids, out: list) -> None:
        for oid in oids:
            e = self.entries.get(oid)
            if e is not None:
                e.submitted -= 1
                if e.submitted <= 0:
                    e.submitted = 0
                    self._check(oid, e, out)

    def add_borrower(self, oid: bytes, address: str) -> bool:
        e = self.entries.get(oid)
        if e is None or not e.owned or address == self.me:
            return False
        if address in e.borrowers:
            return False
        e.borrowers.add(address)
        return True

    def remove_borrower(self, oid: bytes, address: str, out: list) -> None:
        e = self.entries.get(oid)
        if e is not None and address in e.borrowers:
            e.borrowers.discard(address)
            self._check(oid, e, out)

    def remove_borrower_everywhere(self, address: str, out: list) -> None:
        """A borrower process died: it holds nothing any more."""
        for oid, e in list(self.entries.items()):
            if address in e.borrowers:
                e.borrowers.discard(address)
                self._check(oid, e, out)

    def set_contains(self, outer: bytes, inner: list) -> None:
        """``outer``'s value holds refs ``inner``: they live at least as long as it."""
        e = self.entries.get(outer)
        if e is None:
            return
        e.contains = list(inner)
        for oid, owner in inner:
            ie = self.entries.get(oid)
            if ie is None:
                ie = self.entries[oid] = RefEntry(owner, owner == self.me)
                ie.pending = False
            ie.contained_in.add(outer)

    def _check(self, oid: bytes, e: RefEntry, out: list) -> None:
        if e.in_scope():
            return
        if e.lineage_refs > 0 and e.owned:
            # a task kept as lineage needs this object as an argument: if it is a task's
            # output, free its value but keep the entry (its own lineage rebuilds it);
            # a put cannot be rebuilt, so it stays whole
            if e.lineage is not None and not e.value_freed:
                e.value_freed = True
                out.append((FREE, oid, e))
            return
        del self.entries[oid]
        if not e.value_freed:
            out.append((FREE if e.owned else RELEASED, oid, e))
        for inner, _owner in e.contains:  # the refs inside it lose one holder
            ie = self.entries.get(inner)
            if ie is not None:
                ie.contained_in.discard(oid)
                self._check(inner, ie, out)
        spec = e.lineage
        if spec is not None and not any(r in self.entries for r in spec.return_ids()):
            self.remove_lineage(lineage_args(spec), out)  # its last output is gone

    # -- lineage: keep the specs that can rebuild lost objects -----------------------------
    def add_lineage(self, oids) -> None:
        for oid in oids:
            e = self.entries.get(oid)
            if e is not None:
                e.lineage_refs += 1

    def remove_lineage(self, oids, out: list) -> None:
        for oid in oids:
            e = self.entries.get(oid)
            if e is not None:
                e.lineage_refs = max(0, e.lineage_refs - 1)
                self._check(oid, e, out)

    # -- queries ----------------------------------------------------------
    def get(self, oid: bytes) -> RefEntry | None:
        return self.entries.get(oid)

    def owner_of(self, oid: bytes) -> str | None:
        e = self.entries.get(oid)
        return e.owner if e is not None else None

    def num_objects(self) -> int:
        return len(self.entries)


def lineage_args(spec) -> list:
    """The arguments a kept spec would need again to re-run: those passed by reference."""
    return [a[1] for a in spec.args if a[0] == 1]  # ARG_REF
