"""Running a coroutine on the best event loop at hand (uvloop when installed)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # optional: asyncio's own loop serves too
            pass
        else:
            result: T = uvloop.run(coro)
            return result
    return asyncio.run(coro)
