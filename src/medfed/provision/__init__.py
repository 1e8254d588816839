"""Provisioning a federation: a project CA, server and site certificates, startup kits and
revocation."""

from medfed.provision.gate import CertificateGate
from medfed.provision.kits import (
    ClientKit,
    ProvisionReport,
    ServerKit,
    load_client_kit,
    load_server_kit,
    provision,
)
from medfed.provision.project import ProjectConfig, load_project
from medfed.provision.revocation import revoke

__all__ = [
    "CertificateGate",
    "ClientKit",
    "ProjectConfig",
    "ProvisionReport",
    "ServerKit",
    "load_client_kit",
    "load_project",
    "load_server_kit",
    "provision",
    "revoke",
]
