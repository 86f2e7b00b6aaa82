"""What every config model shares: strict parsing (an unknown key is an error)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SPARK_TYPES = ("string", "int", "bigint", "double", "date", "timestamp", "boolean")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
