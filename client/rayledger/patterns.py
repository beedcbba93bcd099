"""Words for the patterns the API's fields follow, so that a refusal says what a valid
value looks like rather than quoting a regular expression (the server words its 422s with
them; the schemas register theirs as they are defined)."""

from __future__ import annotations

PATTERN_WORDS: dict[str, str] = {}


def describe_pattern(pattern: str, words: str) -> str:
    # One pattern, one wording: two fields sharing a regex would otherwise share (and
    # overwrite) each other's example, e.g. an amount refused with a rate's "0.9231".
    assert PATTERN_WORDS.get(pattern, words) == words, f"{pattern} is described twice"
    PATTERN_WORDS[pattern] = words
    return pattern
