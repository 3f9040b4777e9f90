"""Profiles at the edge (limits, one-line errors) and the cursor's text form, without services."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as PydanticError

from projections.paging import Cursor, decode_cursor
from projections.profiles import encode, profiles_key
from streams import rules
from streams.errors import ValidationError
from streams.events import ParticipantProfileUpdated
from streams.profiles import MAX_PROFILE_BYTES, ProfileIn
from streams.validation import format_errors


def test_a_full_profile_becomes_its_event_and_reads_show_only_the_set_fields() -> None:
    body = ProfileIn(
        display_name="Ann",
        avatar_url="https://cdn.example/ann.png",
        country="FR",
        metadata={"clan": "red"},
    )
    ev = body.to_event("ann", 123, "player")
    assert ev == ParticipantProfileUpdated(
        "ann", 123, "Ann", "https://cdn.example/ann.png", "FR", {"clan": "red"}, "player"
    )
    assert ProfileIn(display_name="Bob").to_event("bob", 1).profile() == {"display_name": "Bob"}
    assert encode(ProfileIn().to_event("x", 1)) == "{}"


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"country": "fr"}, "country", "ISO 3166-1"),
        ({"country": "FRA"}, "country", "ISO 3166-1"),
        ({"display_name": ""}, "display_name", "at least 1"),
        ({"display_name": "   "}, "display_name", "blank"),
        ({"display_name": "x" * 65}, "display_name", "at most 64"),
        ({"display_name": "a\u202eb"}, "display_name", "control or format"),
        ({"display_name": "a\nb"}, "display_name", "control or format"),
        ({"avatar_url": "ftp://x.test/a.png"}, "avatar_url", "http"),
        ({"avatar_url": "https://x.test/" + "a" * 600}, "avatar_url", "at most 512"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16"),
        ({"metadata": {"k": "v" * 257}}, "metadata", "at most 256"),
        ({"metadata": {"": "v"}}, "metadata", "at least 1"),
        ({"nickname": "x"}, "nickname", "unknown field"),
    ],
)
def test_bad_profiles_are_refused_in_one_line_naming_the_field(
    body: dict[str, object], field: str, why: str
) -> None:
    with pytest.raises(PydanticError) as err:
        ProfileIn.model_validate(body)
    line = format_errors(err.value)
    assert "\n" not in line
    assert field in line and why in line, line


def test_the_encoded_profile_is_bounded() -> None:
    big = {f"k{i:02d}" + "x" * 60: "v" * 256 for i in range(16)}
    with pytest.raises(PydanticError) as err:
        ProfileIn(metadata=big)
    assert f"at most {MAX_PROFILE_BYTES}" in format_errors(err.value)


def test_the_participant_id_follows_the_score_rules() -> None:
    with pytest.raises(ValueError, match="participant_id"):
        ProfileIn().to_event("a\u200bb", 1)


def test_profile_keys_per_namespace_share_one_hash_tag() -> None:
    assert profiles_key() == "lb:{profiles}"
    assert profiles_key("t1.") == "lb:{profiles}:t1."


def test_a_cursor_round_trips_and_foreign_text_is_refused() -> None:
    member = rules.member(1_700_000_000_000, 42, 0, "team/ann")
    cursor = Cursor("2026-11", "-1200", member, 17)
    text = cursor.encode()
    assert "=" not in text and "/" not in text and "+" not in text
    assert decode_cursor(text) == cursor
    for bad in ["", "%%%", "bm90LWEtY3Vyc29y", Cursor("all", "x", member, 1).encode()]:
        with pytest.raises(ValidationError, match="cursor"):
            decode_cursor(bad)
    with pytest.raises(ValidationError, match="bad position"):
        decode_cursor(Cursor("all", "1", "ann", 1).encode())
