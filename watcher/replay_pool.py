"""``replay --jobs N``: files classified in worker processes, results back in input order.

Each worker builds the engine once (the pool's initializer) and reads its files itself: only
file descriptions go out and only the uses and counts come back. Files go out in batches of
consecutive files (up to ``BATCH_FILES`` or ``BATCH_BYTES`` as stored): a CloudTrail file takes
about a millisecond, so one round trip per file cost the parent as much as the work (measured:
two workers no faster than one). Results are yielded in the order the files were listed,
whatever order the workers finish in, so de-duplication's "first seen" and everything else the
parent does are exactly those of ``--jobs 1``. At most ``WINDOW_PER_JOB * jobs`` batches are in
flight: memory does not grow with the archive.

A parent with one thread forks its workers (they start at once, engine and imports already
there); one with more threads (a progress bar's monitor, a test's moto server) starts them from
the ``forkserver``, a clean single-threaded process, so that no lock held by another thread is
inherited. They take the parent's AWS environment explicitly, since the fork server keeps the
one it started with.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from watcher.archive import Object, ReadError, read_object
from watcher.errors import WatcherError
from watcher.replay_file import FileResult, ReplayEngine, classify_file, unreadable

WINDOW_PER_JOB = 4
BATCH_FILES = 32
BATCH_BYTES = 4 << 20

_engine: ReplayEngine | None = None


@dataclass(frozen=True, slots=True)
class FileDone:
    """A file's result and its size as stored (what the progress bar counts)."""

    result: FileResult
    size: int


def process(obj: Object, engine: ReplayEngine) -> FileDone:
    """Read and classify one file."""
    try:
        data = read_object(obj)
    except ReadError as exc:
        return FileDone(unreadable(obj.name, str(exc)), 0)
    return FileDone(classify_file(obj.name, data, engine), len(data))


def _start_worker(engine: ReplayEngine, aws_env: dict[str, str]) -> None:
    """``engine`` arrives pickled as its rules and is rebuilt here, once per worker."""
    global _engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(aws_env)
    _engine = engine


def _work(batch: list[Object]) -> list[FileDone]:
    assert _engine is not None, "the pool's initializer builds the engine"
    return [process(obj, _engine) for obj in batch]


def batches(objects: Iterable[Object]) -> Iterator[list[Object]]:
    """Consecutive objects, ``BATCH_FILES`` or ``BATCH_BYTES`` (as stored) at most a batch;
    a larger file is a batch of its own."""
    batch: list[Object] = []
    size = 0
    for obj in objects:
        if batch and (len(batch) == BATCH_FILES or size + obj.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(obj)
        size += obj.size
    if batch:
        yield batch


def results(objects: Iterable[Object], engine: ReplayEngine, jobs: int) -> Iterator[FileDone]:
    """The result of every file, in the order of ``objects``; ``jobs`` 1 (or a single file: a
    pool would only cost its start) runs in this process."""
    listed = iter(objects)
    first = list(itertools.islice(listed, 2))
    objects = itertools.chain(first, listed)
    if jobs == 1 or len(first) < 2:
        for obj in objects:
            yield process(obj, engine)
        return
    aws_env = {n: v for n, v in os.environ.items() if n.startswith("AWS_")}
    context: multiprocessing.context.BaseContext
    if threading.active_count() == 1:
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # imported once, not once per worker
    with ProcessPoolExecutor(
        jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(engine, aws_env),
    ) as pool:
        window: deque[Future[list[FileDone]]] = deque()
        try:
            for batch in batches(objects):
                window.append(pool.submit(_work, batch))
                if len(window) >= WINDOW_PER_JOB * jobs:
                    yield from _result(window.popleft())
            while window:
                yield from _result(window.popleft())
        finally:
            for future in window:  # the consumer stopped early (a closed pipe): drop the rest
                future.cancel()


def _result(future: Future[list[FileDone]]) -> list[FileDone]:
    try:
        return future.result()
    except BrokenProcessPool as exc:  # killed (out of memory, a signal): say so, no traceback
        raise WatcherError(f"a replay worker process died ({exc}); --jobs 1 runs without") from exc
