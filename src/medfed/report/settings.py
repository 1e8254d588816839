"""The settings a report shows: a configuration or a job as YAML, every default filled in, its
privacy section cut to what takes effect (``PrivacyConfig.in_effect``), so that a run without
privacy shows no privacy settings. The run's own ``config.yaml`` / ``job.yaml`` stay complete."""

from __future__ import annotations

from typing import Any, Protocol

import yaml

from medfed.config.schema import PrivacyConfig


class Settings(Protocol):
    """A simulation's configuration or a deployed job: a pydantic model with a ``privacy`` section."""

    @property
    def privacy(self) -> PrivacyConfig: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def settings_yaml(settings: Settings) -> str:
    """``settings`` as YAML for the report, without the privacy settings that are off."""
    dumped = settings.model_dump(mode="json")
    privacy = settings.privacy.in_effect()
    if privacy:
        dumped["privacy"] = privacy
    else:
        dumped.pop("privacy", None)
    return str(yaml.safe_dump(dumped, sort_keys=False))
