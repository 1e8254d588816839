"""The base of every pydantic model medfed reads from YAML or JSON."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown fields (a misspelt key is an error, never
    silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
