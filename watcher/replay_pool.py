"""``replay --jobs N``: files classified in worker processes, results back in input order.

Each worker builds the engine once (the pool's initializer) and reads its files itself: only
file descriptions go out and only the uses and counts come back. Results are yielded in the
order the files were listed, whatever order the workers finish in, so de-duplication's "first
seen" and everything else the parent does are exactly those of ``--jobs 1``. At most
``WINDOW_PER_JOB * jobs`` files are in flight: memory does not grow with the archive.

Workers start from the ``forkserver``: a clean single-threaded process, so no lock held by one
of the parent's threads (a progress bar, a test's moto server) is inherited. They take the
parent's AWS environment explicitly, since the fork server keeps the one it started with.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from watcher.archive import Object, ReadError, read_object
from watcher.errors import WatcherError
from watcher.model import Rules
from watcher.replay_file import FileResult, ReplayEngine, classify_file, unreadable

WINDOW_PER_JOB = 4

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


def _start_worker(rules: Rules, aws_env: dict[str, str]) -> None:
    global _engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(aws_env)
    _engine = ReplayEngine(rules)


def _work(obj: Object) -> FileDone:
    assert _engine is not None, "the pool's initializer builds the engine"
    return process(obj, _engine)


def results(objects: Iterable[Object], rules: Rules, jobs: int) -> Iterator[FileDone]:
    """The result of every file, in the order of ``objects``; ``jobs`` 1 (or a single file: a
    pool would only cost its start) runs in this process."""
    listed = iter(objects)
    first = list(itertools.islice(listed, 2))
    objects = itertools.chain(first, listed)
    if jobs == 1 or len(first) < 2:
        engine = ReplayEngine(rules)
        for obj in objects:
            yield process(obj, engine)
        return
    aws_env = {n: v for n, v in os.environ.items() if n.startswith("AWS_")}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # imported once, not once per worker
    with ProcessPoolExecutor(
        jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(rules, aws_env),
    ) as pool:
        window: deque[Future[FileDone]] = deque()
        try:
            for obj in objects:
                window.append(pool.submit(_work, obj))
                if len(window) >= WINDOW_PER_JOB * jobs:
                    yield _result(window.popleft())
            while window:
                yield _result(window.popleft())
        finally:
            for future in window:  # the consumer stopped early (a closed pipe): drop the rest
                future.cancel()


def _result(future: Future[FileDone]) -> FileDone:
    try:
        return future.result()
    except BrokenProcessPool as exc:  # killed (out of memory, a signal): say so, no traceback
        raise WatcherError(f"a replay worker process died ({exc}); --jobs 1 runs without") from exc
