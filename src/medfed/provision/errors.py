"""Errors of provisioning."""

from __future__ import annotations

from medfed.errors import ConfigError


class ProvisionError(ConfigError):
    """A project file, startup kit or certificate cannot be used."""
