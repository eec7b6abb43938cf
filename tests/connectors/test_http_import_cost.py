"""httpcore looks for sniffio on every pool operation; without sniffio installed that was a
failed import (a full `sys.path` search) each time, 7-9% of the worker in the issue-19
profile. pssync depends on sniffio, so the lookup is a dictionary hit."""

from __future__ import annotations

import sys

from httpcore._synchronization import current_async_library


async def test_httpcore_still_detects_asyncio() -> None:
    assert current_async_library() == "asyncio"


class _CountingFinder:
    """A meta path finder that only counts the searches for sniffio."""

    def __init__(self) -> None:
        self.searches = 0

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "sniffio":
            self.searches += 1
        return None


async def test_httpcore_never_searches_for_sniffio_again() -> None:
    finder = _CountingFinder()
    sys.meta_path.insert(0, finder)
    try:
        for _ in range(100):
            assert current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(finder)
    assert finder.searches == 0
