"""Trace uploads (`POST /api/runs`): read within the size limit, then parsed and stored
by the run store in a child process (RunStore.save_upload), awaited off the event loop.

At most `MAX_READING` bodies are read at a time (each within the upload limit), so
concurrent uploads cannot multiply the memory; the parse itself never touches this
process's heap (json.loads of 32 MiB holds the GIL for seconds and builds objects several
times the body's size: on the loop or in a thread of this process it stalls every client,
`/health` included, and leaves the heap at its high-water mark).
"""
from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from .limits import read_limited

MAX_READING = 2                 # upload bodies held in memory at once (each <= max_upload_bytes)


async def store_upload(request, store, limit: int, reading: asyncio.Semaphore) -> str:
    """Read, parse and store one uploaded trace; returns its run id."""
    async with reading:
        body = await read_limited(request, limit)
        return await run_in_threadpool(store.save_upload, body)
