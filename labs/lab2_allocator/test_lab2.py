"""Lab 2 tests: first fit, page alignment, coalescing."""
from __future__ import annotations

import pytest

from labs.conftest import load

P = 4096


@pytest.fixture
def Allocator(request):
    return load(request, "lab2_allocator").Allocator


@pytest.mark.lab2_1
def test_blocks_are_page_aligned_and_whole_pages(Allocator):
    a = Allocator(10 * P)
    assert a.alloc(1) == 0
    assert a.alloc(P + 1) == P         # the first block took a whole page
    assert a.used == 3 * P


@pytest.mark.lab2_1
def test_full_arena_says_none(Allocator):
    a = Allocator(2 * P)
    assert a.alloc(2 * P) == 0
    assert a.alloc(1) is None


@pytest.mark.lab2_1
def test_first_fit_reuses_the_lowest_freed_block(Allocator):
    a = Allocator(10 * P)
    x, y, z = a.alloc(P), a.alloc(P), a.alloc(P)
    a.free(x)
    a.free(z)
    assert a.alloc(P) == x


@pytest.mark.lab2_2
def test_freeing_neighbours_coalesces_them(Allocator):
    a = Allocator(4 * P)
    blocks = [a.alloc(P) for _ in range(4)]
    for b in (blocks[1], blocks[2], blocks[0]):
        assert a.free(b) == P
    assert a.alloc(3 * P) == 0          # three neighbours merged into one range
    assert a.used == 4 * P


@pytest.mark.lab2_2
def test_freeing_an_unknown_block_is_an_error(Allocator):
    a = Allocator(4 * P)
    a.alloc(P)
    with pytest.raises(KeyError):
        a.free(2 * P)
