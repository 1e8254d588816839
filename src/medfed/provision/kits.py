"""Startup kits: the folder each party receives.

Layout written by ``provision(project, out)``::

    out/ca/        ca.crt, ca.key (0600, keep offline), crl.pem, issued.json, signers.json
                   [, ckks.ctx (0600)]
    out/server/    server.crt, server.key (0600), ca.crt, crl.pem, server.yaml, ledger.key (0600),
                   signers.json[, ckks_public.ctx]
    out/<site>/    site.crt, site.key (0600), ca.crt, crl.pem, client.yaml, ledger.key (0600),
                   signers.json[, ckks.ctx (0600)]
                   [, site_policy.yaml: written by the site itself, never by provision]

The ``ckks`` files exist when the project sets ``encryption: ckks``: one secret-key CKKS
context shared by all sites, and its keyless form for the server. Re-running keeps the CA,
the CKKS context and every existing kit, and adds kits for new sites.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from medfed.provision.certs import (
    Identity,
    certificate_pem,
    create_ca,
    issue,
    read_identity,
    write_file,
    write_identity,
)
from medfed.provision.errors import ProvisionError
from medfed.provision.project import ProjectConfig
from medfed.provision.revocation import write_crl
from medfed.transport.tls import TlsFiles

CA_DIR, SERVER_DIR = "ca", "server"
CKKS_FILE, CKKS_PUBLIC_FILE = "ckks.ctx", "ckks_public.ctx"
LEDGER_KEY, SIGNERS_FILE = "ledger.key", "signers.json"
"""Each party's Ed25519 key for the provenance ledger (0600), and every party's public key."""
POLICY_FILE = "site_policy.yaml"
"""A site's own privacy policy in its kit (see ``medfed.deployment.site_policy``)."""


@dataclass(frozen=True)
class ProvisionReport:
    """What one ``provision`` run did; ``ckks``: the master CKKS context's fate, or ``None``
    when the project does not encrypt."""

    created: list[str]
    kept: list[str]
    ckks: Literal["created", "kept"] | None = None


@dataclass(frozen=True)
class ServerKit:
    """The server's kit: TLS files, the CRL, its listening port, the project's sites, the
    keyless CKKS context (``None`` when the project does not encrypt) and its provenance-ledger
    key with the signer list (``None`` in kits provisioned before ledgers existed)."""

    tls: TlsFiles
    crl: Path
    host: str
    port: int
    sites: list[str]
    ckks_context: Path | None = None
    ledger_key: Path | None = None
    signers: Path | None = None


@dataclass(frozen=True)
class ClientKit:
    """A site's kit: TLS files, its name, the server's address, the sites' secret-key CKKS
    context (``None`` when the project does not encrypt), the site's own privacy policy
    file (``None`` when the site has not written one) and its provenance-ledger key with the
    signer list (``None`` in kits provisioned before ledgers existed), and the project's
    revocation list (``None`` in kits provisioned before peer-to-peer deployment)."""

    tls: TlsFiles
    site: str
    server: str
    server_name: str
    ckks_context: Path | None = None
    policy: Path | None = None
    ledger_key: Path | None = None
    signers: Path | None = None
    crl: Path | None = None


def provision(project: ProjectConfig, out_dir: Path) -> ProvisionReport:
    """Writes (or completes) the CA, the server kit and one kit per site under ``out_dir``."""
    created: list[str] = []
    ca = _ca(project, out_dir / CA_DIR, created)
    hosts = sorted({project.server.host, "localhost", "127.0.0.1"})
    _kit(
        ca,
        out_dir / SERVER_DIR,
        "server",
        role="server",
        hosts=hosts,
        days=project.validity_days,
        created=created,
    )
    server_config = {"host": project.server.host, "port": project.server.port, "sites": project.sites}
    write_file(out_dir / SERVER_DIR / "server.yaml", yaml.safe_dump(server_config).encode(), mode=0o644)
    shutil.copyfile(out_dir / CA_DIR / "crl.pem", out_dir / SERVER_DIR / "crl.pem")
    for site in project.sites:
        folder = out_dir / site
        _kit(
            ca,
            folder,
            "site",
            role="client",
            hosts=(),
            days=project.validity_days,
            created=created,
            name=site,
        )
        client_config = {
            "site": site,
            "server": f"{project.server.host}:{project.server.port}",
            "server_name": project.server.host,
        }
        write_file(folder / "client.yaml", yaml.safe_dump(client_config).encode(), mode=0o644)
        shutil.copyfile(out_dir / CA_DIR / "crl.pem", folder / "crl.pem")  # peers check each other
    _ledger_keys(out_dir, ["server", *project.sites])
    kept = [name for name in ["ca", "server", *project.sites] if name not in created]
    ckks = _ckks(out_dir, project.sites) if project.encryption == "ckks" else None
    return ProvisionReport(created=created, kept=kept, ckks=ckks)


def _ckks(out_dir: Path, sites: list[str]) -> Literal["created", "kept"]:
    """Copies the master CKKS context (created on the first run only) to every site, and its
    keyless form to the server."""
    from medfed.privacy import ckks  # tenseal and torch load only for projects that encrypt

    master = out_dir / CA_DIR / CKKS_FILE
    status: Literal["created", "kept"] = "kept" if master.exists() else "created"
    if status == "created":
        _refuse_orphan_contexts(out_dir, sites, master)
        write_file(master, ckks.serialize_context(ckks.create_context(), include_secret_key=True), mode=0o600)
    context, secret = ckks.load_site_context(master), master.read_bytes()
    for site in sites:
        write_file(out_dir / site / CKKS_FILE, secret, mode=0o600)
    public = ckks.serialize_context(context, include_secret_key=False)
    write_file(out_dir / SERVER_DIR / CKKS_PUBLIC_FILE, public, mode=0o644)
    return status


def _ledger_keys(out_dir: Path, parties: list[str]) -> None:
    """A ledger key for each party that has none, and the signer list in the CA and every kit."""
    from medfed.provenance import load_signers, new_signer, save_signers  # provenance reads the CRL
    from medfed.provenance.signers import save_key

    listed = out_dir / CA_DIR / SIGNERS_FILE
    known = dict(load_signers(listed).known) if listed.exists() else {}
    for party in parties:
        key_path = out_dir / party / LEDGER_KEY
        if party in known and key_path.exists():
            continue
        key, known[party] = new_signer(party)
        save_key(key_path, key)
        _record_issue(out_dir / CA_DIR / "issued.json", party, known[party].serial)
    save_signers(listed, known.values())
    for party in parties:
        shutil.copyfile(listed, out_dir / party / SIGNERS_FILE)


def _refuse_orphan_contexts(out_dir: Path, sites: list[str], master: Path) -> None:
    """A new key next to kits that hold an old one would split the federation."""
    existing = [out_dir / SERVER_DIR / CKKS_PUBLIC_FILE, *(out_dir / site / CKKS_FILE for site in sites)]
    orphans = [str(path) for path in existing if path.exists()]
    if orphans:
        raise ProvisionError(
            f"{', '.join(orphans)} hold a CKKS context but its master copy '{master}' is missing: "
            "restore it, or delete those files to give every party a new key"
        )


def _ca(project: ProjectConfig, folder: Path, created: list[str]) -> Identity:
    if (folder / "ca.crt").exists():
        return read_identity(folder / "ca.crt", folder / "ca.key")
    ca = create_ca(project.name, days=max(project.validity_days, 3650))
    write_identity(ca, folder / "ca.crt", folder / "ca.key")
    write_file(folder / "issued.json", b"{}", mode=0o644)
    write_crl(ca, [], folder / "crl.pem")
    created.append("ca")
    return ca


def _kit(
    ca: Identity,
    folder: Path,
    stem: str,
    *,
    role: str,
    hosts: tuple[str, ...] | list[str],
    days: int,
    created: list[str],
    name: str = "server",
) -> None:
    if (folder / f"{stem}.crt").exists() and (folder / f"{stem}.key").exists():
        return
    identity = issue(ca, name, role="server" if role == "server" else "client", days=days, hosts=hosts)
    write_identity(identity, folder / f"{stem}.crt", folder / f"{stem}.key")
    write_file(folder / "ca.crt", certificate_pem(ca.certificate), mode=0o644)
    _record_issue(folder.parent / CA_DIR / "issued.json", name, identity.certificate.serial_number)
    created.append(name)


def _record_issue(path: Path, name: str, serial: int) -> None:
    issued = json.loads(path.read_text())
    issued.setdefault(name, []).append(str(serial))
    write_file(path, json.dumps(issued, indent=2).encode(), mode=0o644)


def load_server_kit(folder: Path) -> ServerKit:
    """Reads a server kit written by ``provision``; raises ``ProvisionError`` when incomplete."""
    config = _read_yaml(folder / "server.yaml")
    tls = TlsFiles(folder / "server.crt", folder / "server.key", folder / "ca.crt")
    _require(tls.certificate, tls.private_key, tls.ca_certificate, folder / "crl.pem")
    try:
        return ServerKit(
            tls,
            folder / "crl.pem",
            str(config["host"]),
            int(config["port"]),  # type: ignore[call-overload]
            list(config["sites"]),  # type: ignore[call-overload]
            _optional(folder / CKKS_PUBLIC_FILE),
            _optional(folder / LEDGER_KEY),
            _optional(folder / SIGNERS_FILE),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ProvisionError(f"'{folder / 'server.yaml'}' lacks or garbles {error}") from None


def load_client_kit(folder: Path) -> ClientKit:
    """Reads a site kit written by ``provision``; raises ``ProvisionError`` when incomplete."""
    config = _read_yaml(folder / "client.yaml")
    tls = TlsFiles(folder / "site.crt", folder / "site.key", folder / "ca.crt")
    _require(tls.certificate, tls.private_key, tls.ca_certificate)
    try:
        return ClientKit(
            tls,
            str(config["site"]),
            str(config["server"]),
            str(config["server_name"]),
            _optional(folder / CKKS_FILE),
            _present(folder / POLICY_FILE),
            _optional(folder / LEDGER_KEY),
            _optional(folder / SIGNERS_FILE),
            _optional(folder / "crl.pem"),
        )
    except KeyError as error:
        raise ProvisionError(f"'{folder / 'client.yaml'}' lacks {error}") from None


def _read_yaml(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ProvisionError(f"cannot read kit file '{path}': {error}") from None
    if not isinstance(data, dict):
        raise ProvisionError(f"kit file '{path}' is not a mapping")
    return data


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def _present(path: Path) -> Path | None:
    """``path`` when anything is there (a broken link or a folder fails loudly when read)."""
    return path if path.exists() or path.is_symlink() else None


def _require(*paths: Path) -> None:
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ProvisionError(f"startup kit incomplete, missing: {', '.join(missing)}")
