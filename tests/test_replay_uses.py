"""De-duplication and time order of replay's uses, in memory and spilled to disk."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from watcher.replay import run_replay
from watcher.replay_file import Use
from watcher.replay_uses import Uses
from watcher.rules import load_rules

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def use(key: str, minute: int, rank: int, event_id: str) -> Use:
    return Use(
        event_id,
        T0 + timedelta(minutes=minute),
        "bg",
        "unexpected",
        None,
        "success",
        "AssumeRole",
        None,
        None,
        "123456789012",
        "us-east-1",
        key,
        rank,
    )


def drained(uses: Uses) -> list[Use]:
    try:
        return list(uses)
    finally:
        uses.close()


def test_the_highest_rank_wins_then_the_first_seen_even_across_a_spill() -> None:
    uses = Uses(bound=1)
    uses.add(use("shared", 5, 1, "role-copy"))  # the role account's copy arrives first
    uses.add(use("a", 1, 2, "a"))  # past the bound: both go to disk
    assert uses.spilled
    uses.add(use("shared", 5, 2, "caller-copy"))  # the deciding copy, after the spill
    uses.add(use("shared", 5, 2, "caller-copy-again"))  # an equal: the first seen stays
    uses.add(use("b", 5, 2, "b"))  # same time as "shared", seen later
    assert [u.event_id for u in drained(uses)] == ["a", "caller-copy", "b"]


events = st.lists(
    st.tuples(st.sampled_from("abcdefg"), st.integers(0, 5), st.integers(1, 2)), max_size=40
)


@given(events=events, bound=st.integers(1, 6))
def test_spilling_changes_nothing(events: list[tuple[str, int, int]], bound: int) -> None:
    in_memory, spilled = Uses(bound=10_000), Uses(bound=bound)
    for number, (key, minute, rank) in enumerate(events):
        for uses in (in_memory, spilled):
            uses.add(use(key, minute, rank, f"e{number}"))
    assert drained(spilled) == drained(in_memory)


def test_replay_prints_the_same_with_a_tiny_bound() -> None:
    rules = load_rules(REPO / "rules")
    examples = REPO / "examples" / "cloudtrail"
    files = sorted(examples.glob("*.json*"))
    outputs = []
    for bound in (1, 200_000):
        out = io.StringIO()
        assert run_replay(rules, files, summary=False, out=out, err=io.StringIO(), bound=bound) == 0
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 7
    assert all(json.loads(line)["principal"] for line in outputs[0].splitlines())
