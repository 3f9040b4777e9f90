"""Participant profiles at the edge: the limits of a profile and the one model that checks them."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streams import rules
from streams.events import ParticipantProfileUpdated

__all__ = [
    "MAX_AVATAR_URL",
    "MAX_DISPLAY_NAME",
    "MAX_META_KEYS",
    "MAX_META_VALUE",
    "MAX_PROFILE_BYTES",
    "ProfileIn",
]

MAX_DISPLAY_NAME = 64
MAX_AVATAR_URL = 512
MAX_META_KEYS = 16
MAX_META_VALUE = 256
#: The encoded profile (JSON, UTF-8) may not exceed this: every read carries it per row.
MAX_PROFILE_BYTES = 4096

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _control_free(value: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise ValueError("may not hold control or format characters")
    return value


class ProfileIn(BaseModel):
    """A participant's whole profile as a client sends it (PUT replaces the previous one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_name: Annotated[str, Field(min_length=1, max_length=MAX_DISPLAY_NAME)] | None = None
    avatar_url: Annotated[str, Field(min_length=1, max_length=MAX_AVATAR_URL)] | None = None
    country: str | None = Field(None, description="ISO 3166-1 alpha-2 code, e.g. FR")
    metadata: dict[
        Annotated[str, Field(min_length=1, max_length=64)],
        Annotated[str, Field(max_length=MAX_META_VALUE)],
    ] = Field(default_factory=dict, max_length=MAX_META_KEYS)

    @field_validator("display_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("may not be blank")
        return _control_free(value)

    @field_validator("avatar_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError(f"must be an http:// or https:// URL (got {value[:60]!r})")
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and not _COUNTRY.match(value):
            raise ValueError(f"must be an ISO 3166-1 alpha-2 code such as FR (got {value!r})")
        return value

    @model_validator(mode="after")
    def _size(self) -> ProfileIn:
        size = len(json.dumps(self.model_dump(exclude_none=True)).encode())
        if size > MAX_PROFILE_BYTES:
            raise ValueError(f"the profile is {size} bytes encoded; at most {MAX_PROFILE_BYTES}")
        return self

    def to_event(
        self, participant_id: str, updated_at: int, updated_by: str = "service"
    ) -> ParticipantProfileUpdated:
        """The event that sets this profile for ``participant_id``."""
        reason = rules.participant_reason(participant_id)
        if reason:
            raise ValueError(reason)
        return ParticipantProfileUpdated(
            participant_id=participant_id,
            updated_at=updated_at,
            display_name=self.display_name,
            avatar_url=self.avatar_url,
            country=self.country,
            metadata=dict(self.metadata),
            updated_by=updated_by,
        )
