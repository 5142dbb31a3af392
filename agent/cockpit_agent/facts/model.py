"""The base of the facts' records: immutable, and strict about unknown fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A fact record: frozen once read, and no field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")
