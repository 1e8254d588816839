"""The project file of ``medfed provision``: where the server listens and which sites exist."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from medfed.config.strict import StrictModel
from medfed.provision.errors import ProvisionError

SITE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
RESERVED_NAMES = frozenset({"ca", "server"})


class ServerAddress(StrictModel):
    """The address sites connect to; ``host`` goes into the server certificate."""

    host: str = "localhost"
    port: int = Field(8443, ge=1, le=65535)


class ProjectConfig(StrictModel):
    """A federation: its name, server and sites.

    Example::

        name: brain-lesions
        server: {host: fl.example.org, port: 8443}
        sites: [hospital_a, hospital_b, hospital_c]
        encryption: ckks    # optional: ship a CKKS context (sites: secret key, server: keyless)
    """

    name: str = "medfed"
    server: ServerAddress = ServerAddress()
    sites: list[str] = Field(min_length=1)
    validity_days: int = Field(365, ge=1, le=3650)
    encryption: Literal["ckks"] | None = None

    @field_validator("sites")
    @classmethod
    def _valid_sites(cls, sites: list[str]) -> list[str]:
        for site in sites:
            if not SITE_NAME.fullmatch(site) or site in RESERVED_NAMES:
                raise ValueError(
                    f"site name '{site}' must use letters, digits, '_', '.', '-' and not be "
                    f"{sorted(RESERVED_NAMES)}"
                )
        if len(set(sites)) != len(sites):
            raise ValueError(f"site names must be unique, got {sites}")
        return sites

    @model_validator(mode="after")
    def _sites_not_named_as_the_server(self) -> ProjectConfig:
        """A site's certificate carries its name as a TLS host name (peers dial it by that
        name): a site named as the server's host could pass for the server."""
        taken = {self.server.host.lower(), "localhost"}
        clash = [site for site in self.sites if site.lower() in taken or _is_ip_address(site)]
        if clash:
            raise ValueError(f"site names {clash} are the server's host, 'localhost' or an IP address")
        return self


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def load_project(path: Path) -> ProjectConfig:
    """Reads and validates a project YAML file; raises ``ProvisionError`` naming the problem."""
    try:
        return ProjectConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise ProvisionError(f"project file '{path}': {error}") from None
