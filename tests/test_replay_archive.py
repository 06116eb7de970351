"""replay of an archive in CloudTrail's layout: s3:// against moto's S3 and the same on disk,
pruning proven by moto's request log, the delivery-lag edge, --jobs, progress on a terminal."""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import os
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from watcher import archive as archive_module
from watcher.archive import LocalFile, ReadError, retrying
from watcher.cli import main
from watcher.emulator.records import api_call_record, assumed_role_identity, iam_user_identity
from watcher.emulator.server import Emulator
from watcher.model import Principal, Rules
from watcher.replay import run_replay
from watcher.replay_pool import BATCH_BYTES, BATCH_FILES, batches
from watcher.trail_layout import Folder, Level, Selection, locate, parse_bound

BUCKET = "org-trail"
ORG = "o-aaaaaaaaaa"
ORG_ACCOUNT, PLAIN_ACCOUNT, OTHER_ACCOUNT = "111111111111", "222222222222", "333333333333"
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
DAYS = [date(2026, 11, 25) + timedelta(days=n) for n in range(8)]  # 25 Nov .. 2 Dec
RULES = Rules(
    tuple(
        Principal(f"bg-{a}", "role", a, iam_names=("break-glass",))
        for a in (ORG_ACCOUNT, PLAIN_ACCOUNT, OTHER_ACCOUNT)
    ),
    (),
)
# --since 2026-11-28 --until 2026-11-29: two days, day folders 27..30 may hold their records.
SELECTION = Selection(
    parse_bound("2026-11-28", end=False),
    parse_bound("2026-11-29", end=True),
    frozenset({ORG_ACCOUNT, PLAIN_ACCOUNT}),
    frozenset({"us-east-1", "eu-west-1"}),
)
FOLDER_DAYS = {date(2026, 11, 27) + timedelta(days=n) for n in range(4)}


def use(eid: str, account: str, region: str, t: datetime, session: str = "s") -> dict[str, Any]:
    role = f"arn:aws:iam::{account}:role/break-glass"
    return api_call_record(
        identity=assumed_role_identity(role, session, "ASIABG"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=account,
        event_time=t,
        event_id=eid,
        region=region,
    )


def noise(eid: str, account: str, region: str, t: datetime) -> dict[str, Any]:
    return api_call_record(
        identity=iam_user_identity(account, "deployer", "AKIADEPLOY"),
        event_name="DescribeInstances",
        event_source="ec2.amazonaws.com",
        account=account,
        event_time=t,
        event_id=eid,
        region=region,
    )


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def account_root(account: str) -> str:
    return f"AWSLogs/{ORG}/{account}" if account == ORG_ACCOUNT else f"AWSLogs/{account}"


def day_folder(account: str, region: str, day: date) -> str:
    return f"{account_root(account)}/CloudTrail/{region}/{day:%Y/%m/%d}/"


def log_key(account: str, region: str, day: date, n: int = 0) -> str:
    stamp = f"{day:%Y%m%d}T{n:02d}05Z"
    return f"{day_folder(account, region, day)}{account}_CloudTrail_{region}_{stamp}_r{n}.json.gz"


def log_file(records: list[dict[str, Any]]) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode())


def archive() -> dict[str, bytes]:
    """Every object of the bucket: a use at noon in every account, region and day, the edge
    records of delivery lag, one record delivered twice, digests, Insights, stray objects."""
    objects: dict[str, bytes] = {}
    for account in (ORG_ACCOUNT, PLAIN_ACCOUNT, OTHER_ACCOUNT):
        for region in REGIONS:
            for day in DAYS:
                records = [
                    noise(f"n-{account}-{region}-{day}", account, region, at(day, 11)),
                    use(f"u-{account}-{region}-{day}", account, region, at(day, 12)),
                ]
                objects[log_key(account, region, day)] = log_file(records)
            digest = f"{account_root(account)}/CloudTrail-Digest/{region}/2026/11/28/d.json.gz"
            objects[digest] = gzip.compress(b'{"digestStartTime": "x"}')
            insight = f"{account_root(account)}/CloudTrail-Insight/{region}/2026/11/28/i.json.gz"
            objects[insight] = log_file([])
    us, eu = "us-east-1", "eu-west-1"
    late = date(2026, 11, 30)  # delivered the day after: the 23:58 use of the 29th
    objects[log_key(ORG_ACCOUNT, us, late, 23)] = log_file(
        [
            use("late-2358", ORG_ACCOUNT, us, at(late, 0, 0) - timedelta(minutes=2)),
            use("after-0001", ORG_ACCOUNT, us, at(late, 0, 1)),
        ]
    )
    early = date(2026, 11, 28)  # before --since, though in a folder that is read
    objects[log_key(PLAIN_ACCOUNT, eu, early, 1)] = log_file(
        [use("before-2359", PLAIN_ACCOUNT, eu, at(early, 0, 0) - timedelta(minutes=1))]
    )
    twice = at(date(2026, 11, 29), 9)  # the same record in two files: the first listed stays
    objects[log_key(PLAIN_ACCOUNT, eu, twice.date(), 2)] = log_file(
        [use("twice", PLAIN_ACCOUNT, eu, twice, session="first-listed")]
    )
    objects[log_key(PLAIN_ACCOUNT, us, twice.date(), 2)] = log_file(
        [use("twice", PLAIN_ACCOUNT, eu, twice, session="second-listed")]
    )
    objects[f"{day_folder(ORG_ACCOUNT, us, twice.date())}README.txt"] = b"not a log"
    objects["AWSLogs/notes.txt"] = b"not a log"
    return objects


EXPECTED_IDS = sorted(
    [
        *(
            f"u-{a}-{r}-{d}"
            for a in (ORG_ACCOUNT, PLAIN_ACCOUNT)
            for r in ("us-east-1", "eu-west-1")
            for d in (date(2026, 11, 28), date(2026, 11, 29))
        ),
        "late-2358",
        "twice",
    ]
)


@dataclass
class Replayed:
    code: int
    lines: list[dict[str, Any]]
    err: str

    @property
    def ids(self) -> list[str]:
        return sorted(line["event_id"] for line in self.lines)


def replay(sources: list[str], jobs: int = 1, selection: Selection = SELECTION) -> Replayed:
    out, err = io.StringIO(), io.StringIO()
    code = run_replay(
        RULES, sources, summary=False, out=out, err=err, selection=selection, jobs=jobs
    )
    return Replayed(code, [json.loads(x) for x in out.getvalue().splitlines()], err.getvalue())


@pytest.fixture
def s3(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's S3 through the standard AWS environment, as a user's shell would point at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def upload(client: Any, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)


def s3_requests(emulator: Emulator) -> Iterator[tuple[str, str]]:
    """(``ListObjectsV2`` prefix | ``GetObject`` key, kind) of every S3 request recorded."""
    for entry in emulator.calls.entries():
        url = urlsplit(str(entry.get("url", "")))
        path = unquote(url.path).lstrip("/")
        if not path.startswith(BUCKET):
            continue
        query = parse_qs(url.query)
        if entry.get("method") == "GET" and "list-type" in query:
            yield "list", query.get("prefix", [""])[0]
        elif entry.get("method") == "GET" and path.startswith(f"{BUCKET}/"):
            yield "get", path[len(BUCKET) + 1 :]


def ancestors(folder: str) -> set[str]:
    parts = folder.rstrip("/").split("/")
    return {"/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1)}


@pytest.mark.slow  # uploads the archive to moto: 1-2 s
def test_s3_replay_prunes_to_the_selection_and_keeps_exact_event_times(
    s3: Any, emulator: Emulator
) -> None:
    objects = archive()
    upload(s3, objects)
    emulator.calls.start()
    result = replay([f"s3://{BUCKET}"])
    requests = list(s3_requests(emulator))
    assert result.code == 0, result.err
    assert result.ids == EXPECTED_IDS  # not after-0001 (next day), not before-2359
    twice = [line for line in result.lines if line["event_id"] == "twice"]
    assert [line["session_name"] for line in twice] == ["first-listed"]
    times = [line["event_time"] for line in result.lines]
    assert times == sorted(times)

    day_folders = {
        day_folder(a, r, d)
        for a in (ORG_ACCOUNT, PLAIN_ACCOUNT)
        for r in ("us-east-1", "eu-west-1")
        for d in FOLDER_DAYS
    }
    allowed = set().union(*(ancestors(f) for f in day_folders))
    allowed |= {f"AWSLogs/{ORG}/{a}/" for a in SELECTION.accounts or ()}  # tried in each org
    listed = [prefix for kind, prefix in requests if kind == "list"]
    assert set(listed) <= allowed, sorted(set(listed) - allowed)
    assert day_folders <= set(listed)  # every day folder that can hold a record was listed
    fetched = {key for kind, key in requests if kind == "get"}
    wanted = {k for k in objects if k.rsplit("/", 1)[0] + "/" in day_folders and "CloudTrail_" in k}
    assert fetched == wanted
    *_, summary = result.err.splitlines()
    assert summary.startswith(f"replay: {len(wanted)} files (")
    # CloudTrail-Digest/ and CloudTrail-Insight/ of both accounts, README.txt, AWSLogs/notes.txt
    assert summary.endswith(", 6 other objects and folders skipped")


RULE_FILE = f"""
principals:
  - name: bg-org
    match: {{role_name: break-glass}}
    account: "{ORG_ACCOUNT}"
  - name: bg-plain
    match: {{role_name: break-glass}}
    account: "{PLAIN_ACCOUNT}"
"""


@pytest.mark.slow  # uploads the archive to moto: 1-2 s
def test_the_command_line_takes_the_selection_and_s3_uris(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(s3, archive())
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE_FILE)
    flags = ["--since", "2026-11-28", "--until", "2026-11-29", "--jobs", "1"]
    flags += ["--accounts", f"{ORG_ACCOUNT}, {PLAIN_ACCOUNT}", "--regions", "us-east-1,eu-west-1"]
    assert (
        main(["--log-format", "text", "replay", "--rules", str(rules), *flags, f"s3://{BUCKET}"])
        == 0
    )
    out = capsys.readouterr().out
    assert sorted(json.loads(line)["event_id"] for line in out.splitlines()) == EXPECTED_IDS
    bad_flags = [["--since", "yesterday"], ["--jobs", "0"], ["--regions", ","]]
    bad_flags += [["--regions", "EU-WEST-1"], ["--accounts", "12345"]]
    for bad in bad_flags:
        with pytest.raises(SystemExit) as exit_:
            main(["replay", "--rules", str(rules), *bad, f"s3://{BUCKET}"])
        assert exit_.value.code == 2
    backwards = ["--since", "2026-11-29", "--until", "2026-11-28"]
    assert main(["replay", "--rules", str(rules), *backwards, f"s3://{BUCKET}"]) == 2
    assert "is not before --until" in capsys.readouterr().err


@pytest.mark.slow  # uploads the archive to moto: 1-2 s
def test_the_same_archive_on_disk_gives_the_same_output(s3: Any, tmp_path: Path) -> None:
    objects = archive()
    upload(s3, objects)
    for key, body in objects.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)
    from_s3 = replay([f"s3://{BUCKET}/"])
    on_disk = replay([str(tmp_path)])
    inside = replay([str(tmp_path / "AWSLogs")])
    assert from_s3.lines == on_disk.lines == inside.lines
    assert from_s3.ids == EXPECTED_IDS
    everything = replay([str(tmp_path)], selection=Selection())
    assert len(everything.ids) == len(set(everything.ids)) == 3 * 3 * 8 + 4


@pytest.mark.slow
def test_two_jobs_give_the_output_of_one(s3: Any) -> None:
    upload(s3, archive())
    one = replay([f"s3://{BUCKET}"], jobs=1)
    two = replay([f"s3://{BUCKET}"], jobs=2)
    assert one.lines == two.lines and one.code == two.code == 0
    assert one.err == two.err
    unpruned = replay([f"s3://{BUCKET}"], jobs=2, selection=Selection())
    assert unpruned.code == 0 and len(unpruned.lines) == 3 * 3 * 8 + 4


def test_listings_of_many_pages_are_read_whole(
    s3: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two keys or folders a page, so every level of the walk spans pages."""
    day = date(2026, 11, 29)
    objects = {
        log_key(a, r, day, n): log_file([use(f"{a}-{r}-{n}", a, r, at(day, n))])
        for a in (ORG_ACCOUNT, PLAIN_ACCOUNT, OTHER_ACCOUNT)
        for r in REGIONS
        for n in range(3)
    }
    upload(s3, objects)
    monkeypatch.setattr(archive_module, "PAGE_SIZE", 2)
    emulator.calls.start()
    result = replay([f"s3://{BUCKET}"], selection=Selection())
    assert result.code == 0
    assert len(result.ids) == len(objects)
    queries = [parse_qs(urlsplit(str(e["url"])).query) for e in emulator.calls.entries()]
    assert any("continuation-token" in query for query in queries)  # pages were followed


def test_a_corrupt_or_missing_object_is_located_and_the_run_goes_on(
    s3: Any, emulator: Emulator
) -> None:
    day = date(2026, 11, 29)
    good = log_key(ORG_ACCOUNT, "us-east-1", day)
    corrupt = log_key(ORG_ACCOUNT, "us-east-1", day, 7)
    not_json = log_key(ORG_ACCOUNT, "us-east-1", day, 8)
    upload(
        s3,
        {
            good: log_file([use("good", ORG_ACCOUNT, "us-east-1", at(day, 12))]),
            corrupt: b"\x1f\x8b" + b"garbage" * 10,
            not_json: gzip.compress(b"<html>not json</html>"),
        },
    )
    result = replay([f"s3://{BUCKET}"])
    assert result.code == 1
    assert result.ids == ["good"]
    lines = result.err.splitlines()
    assert f"warning: malformed record: s3://{BUCKET}/{not_json}:1: not JSON" in "\n".join(lines)
    assert any(line.startswith(f"error: s3://{BUCKET}/{corrupt}: cannot read") for line in lines)
    assert lines[-1].startswith("replay: 3 files")


def test_a_missing_bucket_is_a_located_error(s3: Any) -> None:
    result = replay(["s3://no-such-bucket/AWSLogs/"])
    assert (result.code, result.lines) == (1, [])
    error, summary = result.err.splitlines()
    assert error.startswith("error: s3://no-such-bucket/AWSLogs/: cannot read: ")
    assert "NoSuchBucket" in error
    assert summary.startswith("replay: 0 files")


def test_transient_failures_are_retried_then_located() -> None:
    throttled = ClientError({"Error": {"Code": "SlowDown"}}, "GetObject")
    denied = ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")
    answers: list[BaseException | bytes] = [throttled, throttled, b"data"]
    waits: list[float] = []

    def call() -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert retrying(call, "s3://b/k", sleep=waits.append) == b"data"
    assert len(waits) == 2
    answers[:] = [denied]
    with pytest.raises(ReadError, match=r"^s3://b/k: cannot read: .*AccessDenied"):
        retrying(call, "s3://b/k", sleep=waits.append)
    answers[:] = [throttled] * 5
    with pytest.raises(ReadError, match=r"after 5 attempts"):
        retrying(call, "s3://b/k", sleep=waits.append)


def test_layout_positions_and_day_margin() -> None:
    assert locate([]) == Folder(Level.ROOT)
    assert locate(["trail-prefix"]) == Folder(Level.ROOT)
    assert locate(["x", "AWSLogs", ORG, ORG_ACCOUNT, "CloudTrail", "eu-west-1"]) == Folder(
        Level.REGION, account=ORG_ACCOUNT, region="eu-west-1"
    )
    assert locate(["AWSLogs", ORG_ACCOUNT, "CloudTrail-Digest"]) is None
    assert SELECTION.first_day() == date(2026, 11, 27)
    assert SELECTION.last_day() == date(2026, 11, 30)
    until = Selection(until=parse_bound("2026-11-29T00:00:00Z", end=True))
    assert until.last_day() == date(2026, 11, 29)  # exclusive: 23:59:59.999999 of the 28th + 1
    month = Folder(Level.YEAR, year=2026)
    assert [m for m in ("10", "11", "12") if month.wanted(m, SELECTION)] == ["11"]
    assert parse_bound("2026-11-29T01:00:00+02:00", end=False) == datetime(
        2026, 11, 28, 23, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        parse_bound("yesterday", end=False)


def read_all(leader: int) -> bytes:
    """All a closed terminal's other end holds: one read returns only what arrived so far."""
    chunks = []
    try:
        while chunk := os.read(leader, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: every byte read and the other end closed (Linux)
        pass
    finally:
        os.close(leader)
    return b"".join(chunks)


def test_progress_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    path = tmp_path / "log.json.gz"
    path.write_bytes(log_file([use("u", ORG_ACCOUNT, "us-east-1", at(date(2026, 11, 28), 12))]))
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with open(follower, "w") as terminal:
        code = run_replay(RULES, [path], summary=False, out=io.StringIO(), err=terminal)
    drawn = read_all(leader).decode()
    assert code == 0
    assert re.search(r"replay: 100%.*files=1, records=1", drawn), drawn
    assert drawn.rstrip().endswith(
        "replay: 1 files (0.0 MB), 1 records read, 1 parsed, 1 uses found"
    )
    piped = io.StringIO()
    run_replay(RULES, [path], summary=False, out=io.StringIO(), err=piped)
    assert piped.getvalue() == "replay: 1 files (0.0 MB), 1 records read, 1 parsed, 1 uses found\n"


def test_a_folder_with_an_archive_and_loose_files_loses_none(tmp_path: Path) -> None:
    """Pruning applies inside AWSLogs only; loose files beside it and a log file put beside the
    day folders are read, digests are not."""
    day = date(2026, 11, 28)
    inside = tmp_path / log_key(ORG_ACCOUNT, "us-east-1", day)
    stray = tmp_path / f"{account_root(ORG_ACCOUNT)}/CloudTrail/us-east-1/2026/11/copy.json"
    digest = tmp_path / f"{account_root(ORG_ACCOUNT)}/CloudTrail-Digest/us-east-1/2026/11/28/d.json"
    loose = tmp_path / "exported" / "lookup.json.gz"
    for path, eid in ((inside, "inside"), (stray, "stray"), (digest, "digest"), (loose, "loose")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(log_file([use(eid, ORG_ACCOUNT, "us-east-1", at(day, 12))]))
    result = replay([str(tmp_path)])
    assert result.code == 0
    assert result.ids == ["inside", "loose", "stray"]
    assert result.err.endswith(", 1 other objects and folders skipped\n")  # CloudTrail-Digest/


def test_batches_keep_the_order_and_their_bounds() -> None:
    sizes = [1, 2, BATCH_BYTES, 3, *[1] * (BATCH_FILES + 1)]
    listed = [LocalFile(f"f{n}", size) for n, size in enumerate(sizes)]
    cut = list(batches(listed))
    assert [obj for batch in cut for obj in batch] == listed
    assert [len(b) for b in cut] == [2, 1, BATCH_FILES, 2]  # the big file alone
    assert all(sum(o.size for o in b) <= BATCH_BYTES or len(b) == 1 for b in cut)


@pytest.mark.slow  # three command runs over a folder of 100 files
def test_two_forked_jobs_give_the_output_of_one(tmp_path: Path) -> None:
    """The command as a user runs it: one thread, so the workers are forked; files in batches.
    The record written twice lies in files of different batches: the first listed stays."""
    twice = use("twice", ORG_ACCOUNT, "us-east-1", at(date(2026, 11, 29), 9))
    again = dict(twice, sourceIPAddress="198.51.100.97")
    for n in range(100):
        day = DAYS[n % len(DAYS)]
        records = [use(f"u{n}", ORG_ACCOUNT, "us-east-1", at(day, n % 24))]
        records += [twice] if n == 8 else [again] if n == 97 else []  # folders of 25, 26 Nov
        path = tmp_path / log_key(ORG_ACCOUNT, "us-east-1", day, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(log_file(records))
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"principals: [{{name: bg, match: {{role_name: break-glass}}, account: '{ORG_ACCOUNT}'}}]\n"
    )
    command = [sys.executable, "-m", "watcher", "replay", "--rules", str(rules)]
    outputs = []
    for jobs in ("1", "2"):
        done = subprocess.run(
            [*command, "--jobs", jobs, str(tmp_path / "AWSLogs")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    lines = [json.loads(line) for line in outputs[0].splitlines()]
    assert len(lines) == 101
    [kept] = [line for line in lines if line["event_id"] == "twice"]
    assert kept["source_ip"] == twice["sourceIPAddress"]
