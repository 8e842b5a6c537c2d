"""Lab 3 tests: re-run exactly the lost part of the lineage, in order."""
from __future__ import annotations

import pytest

from labs.conftest import load


@pytest.fixture
def lab(request):
    return load(request, "lab3_lineage")


# a -> b -> c, and d made from b and a put object p
PRODUCER = {"a": "make", "b": "double", "c": "inc", "d": "mix"}
ARGS = {"make": [], "double": ["a"], "inc": ["b"], "mix": ["b", "p"]}


@pytest.mark.lab3_1
def test_only_lost_tasks_are_rerun(lab):
    assert lab.tasks_to_rerun("c", PRODUCER, ARGS, alive={"a", "p"}) == ["double", "inc"]


@pytest.mark.lab3_1
def test_the_whole_chain_when_everything_is_lost(lab):
    assert lab.tasks_to_rerun("c", PRODUCER, ARGS, alive=set()) == ["make", "double", "inc"]


@pytest.mark.lab3_1
def test_a_surviving_argument_stops_the_walk(lab):
    assert lab.tasks_to_rerun("c", PRODUCER, ARGS, alive={"b"}) == ["inc"]


@pytest.mark.lab3_2
def test_a_lost_put_object_cannot_be_rebuilt(lab):
    with pytest.raises(lab.CannotRebuild, match="p"):
        lab.tasks_to_rerun("d", PRODUCER, ARGS, alive={"a", "b"})
