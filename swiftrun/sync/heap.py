"""Python's cyclic garbage collector, held off while a sync builds its tables.

A scan, a manifest load and a fetch listing each make tens of thousands of small tuples and
strings, none of them in a cycle. Every 700 new objects the collector wakes and walks the young
ones, and now and then everything the process holds (boto3's modules included): ~10 ms of a
120 ms sync of 20 000 files here, and more in a process with a larger heap. Reference counting
still frees every object as usual; only the search for cycles waits until the sync returns.
"""

from __future__ import annotations

import functools
import gc
import threading

_lock = threading.Lock()
_depth = 0
_was_enabled = False


class paused_gc:
    """Context manager and decorator: the collector is off inside, and back as it was once the
    outermost use (in any thread) has left. Nested and concurrent uses are counted, so one that
    ends early never turns it back on under another."""

    def __enter__(self) -> "paused_gc":
        global _depth, _was_enabled
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1
        return self

    def __exit__(self, *exc) -> None:
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with paused_gc():
                return func(*args, **kwargs)
        return wrapper
