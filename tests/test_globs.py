"""GlobSet answers exactly as a loop over ``fnmatch`` patterns does, in one scan."""

from __future__ import annotations

import re
from fnmatch import translate

from hypothesis import given
from hypothesis import strategies as st

from watcher.globs import GlobSet, widened

# Glob syntax, IAM name characters, and characters whose UTF-8 is several bytes.
globs = st.text(alphabet="ab-_.*?[]!\u212a", min_size=0, max_size=8)
names = st.text(alphabet="ab-_.[]!\u212a\u0130\U0001f600\n", min_size=0, max_size=10)


def first_by_loop(patterns: list[str], name: str) -> int | None:
    return next((i for i, p in enumerate(patterns) if re.match(translate(p), name)), None)


@given(patterns=st.lists(globs, min_size=1, max_size=6), name=names)
def test_first_match_is_the_loops(patterns: list[str], name: str) -> None:
    assert GlobSet(patterns).first(name) == first_by_loop(patterns, name)


def test_sets_and_question_marks_take_one_character_of_any_width() -> None:
    globs = GlobSet(["bg-?", "bg-[!a]x", "*-admin"])
    assert globs.first("bg-\U0001f600") == 0
    assert globs.first("bg-\u212ax") == 1
    assert globs.first("BG-admin".lower()) == 2
    assert globs.first("bg-ab") is None


def test_an_unclosed_set_is_literal() -> None:
    assert widened("a[b") == rb"\Aa\[b\z"
    assert GlobSet(["a[b"]).first("a[b") == 0


def test_a_thousand_patterns_in_rule_order() -> None:
    patterns = [f"bg-{i}-*" for i in range(1000)] + ["*"]
    globs = GlobSet(patterns)
    assert globs.first("bg-999-x") == 999
    assert globs.first("app") == 1000
