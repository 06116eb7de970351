"""The files ``replay`` reads: named files, local folders and ``s3://BUCKET/PREFIX``.

A folder in CloudTrail's layout (``trail_layout.py``) — on disk when its path or a child is
``AWSLogs``, always in S3 — is walked level by level, listing only the folders that can hold a
selected record (S3: ``ListObjectsV2`` with ``Delimiter='/'``, one level at a time, paginated;
never the whole bucket). Any other folder is read recursively, every ``.json``/``.json.gz`` file.
Both walks visit names in S3's order (a folder sorts as ``name/``), so a folder on disk and its
copy in S3 are read in the same order, and the "first seen" of de-duplication is the same.

What the walk yields are picklable descriptions (:class:`LocalFile`, :class:`S3Object`): a
worker process reads the bytes itself (:func:`read_object`), the parent never downloads.
S3 endpoint, credentials and region come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, …). Transient S3 failures (throttling, network, 5xx) are retried with backoff;
the rest become a located error of that folder or object, and the run goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from watcher.errors import WatcherError
from watcher.trail_layout import Folder, Level, Selection, is_log_name, locate

S3_SCHEME = "s3://"
ATTEMPTS = 5
PAGE_SIZE = 1000  # keys and common prefixes per ListObjectsV2 answer (S3's maximum)
_BACKOFF_BASE = 0.2
_BACKOFF_CAP = 5.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: str
    size: int

    @property
    def name(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class S3Object:
    bucket: str
    key: str
    size: int

    @property
    def name(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}"


Object = LocalFile | S3Object


@dataclass
class Listing:
    """What the walk met besides the files it yields."""

    skipped: int = 0
    """Objects and folders that are no CloudTrail log files (digest, Insights, other)."""
    errors: list[str] = field(default_factory=list)
    """A located error per folder that could not be listed."""


class ReadError(WatcherError):
    """An object or folder that could not be read, with where and why."""


# botocore and the sources' retry policy (which imports aiohttp) are imported where S3 is used:
# a replay of local files, and each of its workers, starts without them.


def transient(exc: BaseException) -> bool:
    """A failure worth retrying: throttling, the network, or a 5xx answer."""
    from botocore.exceptions import ClientError

    from watcher.sources.retry import error_kind

    kind = error_kind(exc)
    if kind in ("throttled", "network"):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    return False


def retrying(call: Callable[[], T], where: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried with backoff while it fails transiently; a ReadError naming
    ``where`` when it fails otherwise or too often."""
    from watcher.sources.retry import Backoff, error_kind

    backoff = Backoff(_BACKOFF_BASE, _BACKOFF_CAP)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:
            if error_kind(exc) is None:  # a bug, not AWS's answer: let it raise
                raise
            if not transient(exc) or attempt == ATTEMPTS:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise ReadError(f"{where}: cannot read{tries}: {exc}") from exc
            sleep(backoff.next_delay())
    raise AssertionError("unreachable")


def s3_client() -> Any:
    """This process's S3 client for the AWS environment as it is now (one per worker: clients
    are not shared across processes)."""
    return _s3_client(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))


@cache
def _s3_client(aws_env: tuple[tuple[str, str], ...]) -> Any:
    """botocore's own retries are off: :func:`retrying` retries and says so."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.session.Session().client("s3", config=config)


def read_object(obj: Object) -> bytes:
    """The bytes of one file as stored (gzip or not). Raises ReadError."""
    if isinstance(obj, LocalFile):
        try:
            return Path(obj.path).read_bytes()
        except OSError as exc:
            raise ReadError(f"{obj.path}: cannot read: {exc}") from exc

    def get() -> bytes:
        answer = s3_client().get_object(Bucket=obj.bucket, Key=obj.key)
        body: bytes = answer["Body"].read()
        return body

    return retrying(get, obj.name)


# A lister: (subfolder names, objects) of the folder at these path components.
Lister = Callable[[tuple[str, ...]], tuple[list[str], list[Object]]]


def _walk(
    lister: Lister,
    parts: tuple[str, ...],
    folder: Folder,
    selection: Selection,
    listing: Listing,
) -> Iterator[Object]:
    fixed = folder.fixed_children(selection)
    objects: list[Object] = []
    if fixed is not None:
        names = fixed
    else:
        try:
            names, objects = lister(parts)
        except ReadError as exc:
            listing.errors.append(str(exc))
            return
    for entry in _s3_order(list(names), objects):
        if isinstance(entry, str):
            child = folder.child(entry)
            if child is None:
                listing.skipped += 1
            elif folder.wanted(entry, selection):
                yield from _walk(lister, (*parts, entry), child, selection, listing)
        elif is_log_name(entry.name):  # also beside the day folders: listed anyway, so read
            yield entry
        else:
            listing.skipped += 1


def _local_lister(base: Path) -> Lister:
    def list_folder(parts: tuple[str, ...]) -> tuple[list[str], list[Object]]:
        path = base.joinpath(*parts)
        names: list[str] = []
        objects: list[Object] = []
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir():
                        names.append(entry.name)
                    elif entry.is_file():
                        objects.append(LocalFile(entry.path, entry.stat().st_size))
        except FileNotFoundError:  # a folder the selection named (an account, a region)
            pass
        except OSError as exc:
            raise ReadError(f"{path}: cannot list: {exc}") from exc
        return names, objects

    return list_folder


def _s3_lister(bucket: str, prefix: str) -> Lister:
    def list_folder(parts: tuple[str, ...]) -> tuple[list[str], list[Object]]:
        folder = prefix + "".join(f"{p}/" for p in parts)

        def pages() -> list[dict[str, Any]]:
            paginator = s3_client().get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=bucket,
                Prefix=folder,
                Delimiter="/",
                PaginationConfig={"PageSize": PAGE_SIZE},
            )
            return list(pages)

        names: list[str] = []
        objects: list[Object] = []
        for page in retrying(pages, f"{S3_SCHEME}{bucket}/{folder}"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(folder) :].rstrip("/"))
            for item in page.get("Contents", []):
                objects.append(S3Object(bucket, item["Key"], int(item["Size"])))
        return names, objects

    return list_folder


def _s3_order(names: list[str], objects: list[Object]) -> list[str | Object]:
    """Subfolders and objects in the order S3 lists keys (a folder sorts as ``name/``)."""
    entries: list[tuple[str, str | Object]] = [(f"{n}/", n) for n in names]
    entries += [(o.name.rsplit("/", 1)[-1], o) for o in objects]
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])]


def _local_tree(
    lister: Lister, parts: tuple[str, ...], selection: Selection, listing: Listing
) -> Iterator[Object]:
    """A folder outside the layout: every log file below it, except that an ``AWSLogs``
    folder met on the way is walked as the layout (pruned)."""
    try:
        names, objects = lister(parts)
    except ReadError as exc:
        listing.errors.append(str(exc))
        return
    for entry in _s3_order(names, objects):
        if entry == "AWSLogs":
            yield from _walk(lister, (*parts, entry), Folder(Level.LOGS), selection, listing)
        elif isinstance(entry, str):
            yield from _local_tree(lister, (*parts, entry), selection, listing)
        elif is_log_name(entry.name):
            yield entry


def _local_files(path: Path, selection: Selection, listing: Listing) -> Iterator[Object]:
    if not path.is_dir():  # a named file is read whatever its name
        try:
            size = path.stat().st_size
        except OSError:
            size = 0  # the worker says why it cannot be read
        yield LocalFile(str(path), size)
        return
    lister = _local_lister(path)
    folder = locate(path.parts) if "AWSLogs" in path.parts else None
    if folder is None:
        yield from _local_tree(lister, (), selection, listing)
    else:
        yield from _walk(lister, (), folder, selection, listing)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` as the bucket and the prefix of a folder ("" or ending in /)."""
    bucket, _, prefix = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise WatcherError(f"{uri}: no bucket name (expected s3://BUCKET/PREFIX)")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def _s3_objects(uri: str, selection: Selection, listing: Listing) -> Iterator[Object]:
    bucket, prefix = split_s3(uri)
    folder = locate(prefix.split("/")[:-1])
    if folder is None:
        listing.skipped += 1
        return
    yield from _walk(_s3_lister(bucket, prefix), (), folder, selection, listing)


def objects(sources: Sequence[str], selection: Selection, listing: Listing) -> Iterator[Object]:
    """The files to read, source by source in the order given, lazily (listing goes on while
    the first files are read)."""
    for source in sources:
        if source.startswith(S3_SCHEME):
            yield from _s3_objects(source, selection, listing)
        else:
            yield from _local_files(Path(source), selection, listing)
