"""Commands of a real deployment: ``provision``, ``revoke``, ``server``, ``client``, ``peer``,
``status``, ``report``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from medfed.transport.backoff import DEFAULT_MAX_FAILURES

if TYPE_CHECKING:
    import tenseal as ts

    from medfed.data import SiteData
    from medfed.deployment.job import JobConfig
    from medfed.deployment.peer_status import PeerJobStatus
    from medfed.deployment.provenance import LedgerKeys
    from medfed.deployment.site_policy import SitePolicy
    from medfed.provision import ClientKit, ServerKit

logger = logging.getLogger(__name__)
console = Console()
err_console = Console(stderr=True)


def provision(
    project: Annotated[
        Path, typer.Argument(help="Project YAML: name, server host/port, sites[, encryption: ckks].")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the startup kits.")] = Path(
        "kits"
    ),
) -> None:
    """Create the project CA, the server kit and one startup kit per site (re-run to add sites;
    existing certificates stay valid)."""
    from medfed.provision import load_project
    from medfed.provision import provision as write_kits

    report = write_kits(load_project(project), output)
    console.print(f"created: {', '.join(report.created) or '-'}; kept: {', '.join(report.kept) or '-'}")
    if report.ckks:
        console.print(
            f"CKKS context {report.ckks}: each site kit holds ckks.ctx (secret key), the server kit "
            "only ckks_public.ctx (no key)."
        )
    console.print(f"Send each site its folder under {output}; keep {output / 'ca'} offline.")


def revoke(
    site: Annotated[str, typer.Argument(help="The site whose certificates to revoke.")],
    kits: Annotated[Path, typer.Option(help="Folder written by medfed provision.")] = Path("kits"),
) -> None:
    """Revoke a site's certificates; a running server refuses the site from its next call."""
    from medfed.provision import revoke as revoke_site

    serials = revoke_site(kits, site)
    console.print(f"revoked {site}: {', '.join(f'{serial:x}' for serial in serials)}")


def server(
    job: Annotated[Path, typer.Option(help="Job YAML: model, strategy, training, rounds.")],
    state_dir: Annotated[Path, typer.Option(help="Checkpoints, metrics and status.json.")],
    kit: Annotated[Path | None, typer.Option(help="The server's startup kit.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="Port (default: the kit's).")] = None,
    insecure: Annotated[bool, typer.Option(help="Plain text, no certificates: testing only.")] = False,
    sites: Annotated[str | None, typer.Option(help="Comma-separated sites (--insecure without kit).")] = None,
    gzip: Annotated[bool, typer.Option(help="gzip-compress messages.")] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a job setting: KEY=VALUE, a dotted path into the YAML (repeatable)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the job and print it resolved; start nothing.")
    ] = False,
) -> None:
    """Run a federated job: rounds over gRPC with mutual TLS, resuming after its last
    checkpointed round when restarted with the same command."""
    import yaml

    from medfed.deployment.job import load_job
    from medfed.deployment.server import ServerSettings, run_server
    from medfed.provision import CertificateGate, load_server_kit

    settings_job = load_job(job, overrides or [])
    if dry_run:
        print(yaml.safe_dump(settings_job.model_dump(mode="json"), sort_keys=False), end="")
        return
    _verbose()
    server_kit = load_server_kit(kit) if kit is not None else None
    if server_kit is None and not insecure:
        raise typer.BadParameter("give --kit (mutual TLS), or --insecure for a plain-text test run")
    if insecure:
        _warn_insecure()
    site_names = sites.split(",") if sites else (server_kit.sites if server_kit else [])
    if not site_names and not settings_job.sites:
        raise typer.BadParameter("no sites: give --kit, --sites or 'sites' in the job")
    listen_port = port if port is not None else (server_kit.port if server_kit else 8443)
    settings = ServerSettings(
        state_dir=state_dir,
        address=f"{host}:{listen_port}",
        sites=site_names,
        tls=None if insecure or server_kit is None else server_kit.tls,
        authenticate=None
        if insecure or server_kit is None
        else CertificateGate(server_kit.tls.ca_certificate, server_kit.crl),
        gzip=gzip,
        ckks_context=_server_ckks_context(settings_job, server_kit),
        ledger=_ledger_keys(server_kit),
    )
    final = run_server(settings_job, settings)
    console.print(f"job '{settings_job.name}' finished after round {final.round}; state in {state_dir}")


def client(
    data: Annotated[Path, typer.Option(help="This site's data (folder or .npz).")],
    kit: Annotated[Path | None, typer.Option(help="This site's startup kit.")] = None,
    format: Annotated[str | None, typer.Option(help="msd, dicom, png or npz (default: detect).")] = None,
    server: Annotated[str | None, typer.Option(help="host:port (default: the kit's).")] = None,
    insecure: Annotated[bool, typer.Option(help="Plain text, no certificates: testing only.")] = False,
    site: Annotated[str | None, typer.Option(help="Site name (--insecure without kit).")] = None,
    gzip: Annotated[bool, typer.Option(help="gzip-compress messages.")] = False,
    max_failures: Annotated[
        int,
        typer.Option(
            min=0, help="Give up after this many failed calls in a row, naming the likely cause (0: never)."
        ),
    ] = DEFAULT_MAX_FAILURES,
    max_backoff: Annotated[
        float, typer.Option(help="Longest wait between reconnection attempts, in seconds.")
    ] = 30.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="The site's own files: privacy ledger, strategy state (default: medfed-site-<site>)."
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="This site's privacy policy (YAML, see docs/site-policy.md); the kit's site_policy.yaml and the flags below apply too, the strictest value winning."
        ),
    ] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(
            help="This site's DP-SGD budget epsilon (a smaller job budget applies instead); implies --require-dp-sgd."
        ),
    ] = None,
    delta: Annotated[
        float | None, typer.Option(help="This site's largest DP-SGD delta (with --epsilon).")
    ] = None,
    require_dp_sgd: Annotated[bool, typer.Option(help="Decline jobs without DP-SGD at the sites.")] = False,
    require_secure_aggregation: Annotated[
        bool,
        typer.Option(
            help="Decline jobs in which the server sees this site's update (neither secure aggregation nor CKKS)."
        ),
    ] = False,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.95,
            help="Fraction of the cases kept out of training to evaluate the global model on (0: train on all, evaluate nothing).",
        ),
    ] = 0.2,
    allow_identified: Annotated[
        bool,
        typer.Option(
            help="Accept DICOM that still names its patients (by default refused: run 'medfed deid' first)."
        ),
    ] = False,
) -> None:
    """Take part in a federated job as one site: pull tasks, train locally, send updates, and
    evaluate each new global model on held-out cases. The data never leave the site; a job
    weaker than the site's privacy policy is declined."""
    from medfed.deployment.client import check_certificate, run_client
    from medfed.deployment.provenance import SiteLedger
    from medfed.deployment.site_builder import SiteBuilder, SiteOptions
    from medfed.deployment.site_identity import ProvisionedIdentity
    from medfed.privacy.ckks import load_site_context
    from medfed.provision import load_client_kit
    from medfed.transport.backoff import Backoff
    from medfed.transport.client import SiteChannel

    _verbose()
    client_kit = load_client_kit(kit) if kit is not None else None
    if client_kit is None and not (insecure and site and server):
        raise typer.BadParameter("give --kit (mutual TLS), or --insecure with --site and --server")
    if insecure:
        _warn_insecure()
    name = client_kit.site if client_kit else str(site)
    target = server or (client_kit.server if client_kit else "")
    tls = None if insecure or client_kit is None else client_kit.tls
    server_name = client_kit.server_name if client_kit else None
    if delta is not None and epsilon is None:
        raise typer.BadParameter("--delta goes with --epsilon")
    if tls is not None:
        check_certificate(tls)
    flags: dict[str, object] = {
        "epsilon": epsilon,
        "delta": delta,
        "require_secure_aggregation": require_secure_aggregation,
    }
    if require_dp_sgd:  # unset, it follows from --epsilon
        flags["require_dp_sgd"] = True
    options = SiteOptions(
        state_dir=state_dir or Path(f"medfed-site-{name}"),
        policy=_site_policy(client_kit, policy, flags),
        ckks_context=load_site_context(client_kit.ckks_context)
        if client_kit and client_kit.ckks_context
        else None,
        identity=None if insecure or client_kit is None else ProvisionedIdentity(client_kit.tls),
        holdout=holdout,
    )
    builder = SiteBuilder(_checked_site(name, data, format, holdout, allow_identified), options)

    def connect() -> SiteChannel:
        return SiteChannel(target, site=name, tls=tls, server_name=server_name, gzip=gzip)

    backoff = Backoff(initial=min(0.5, max_backoff), maximum=max_backoff)
    keys = _ledger_keys(client_kit)
    ledger = None if keys is None else SiteLedger(name, keys, options.state_dir)
    rounds = run_client(connect, builder, backoff=backoff, max_failures=max_failures, ledger=ledger)
    console.print(f"site '{name}': job finished, {rounds} rounds trained here")


def peer(
    kit: Annotated[
        Path, typer.Option(help="This site's startup kit (its certificate serves its peers too).")
    ],
    job: Annotated[
        Path,
        typer.Option(
            help="Job YAML, the same at every site (federation.topology: braintorrent, cyclic, gossip)."
        ),
    ],
    data: Annotated[Path, typer.Option(help="This site's data (folder or .npz).")],
    peers: Annotated[Path, typer.Option(help="YAML mapping every site's name to its host:port.")],
    listen: Annotated[
        str | None,
        typer.Option(help="host:port to serve this site's model on (default: its entry in --peers)."),
    ] = None,
    crl: Annotated[
        Path | None, typer.Option(help="The project's revocation list (default: the kit's crl.pem).")
    ] = None,
    format: Annotated[str | None, typer.Option(help="msd, dicom, png or npz (default: detect).")] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Checkpoints, the final model, privacy ledger (default: medfed-site-<site>)."),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="This site's privacy policy (YAML, see docs/site-policy.md).")
    ] = None,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.95, help="Fraction of the cases kept out of training to score the consensus on."
        ),
    ] = 0.2,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a job setting: KEY=VALUE, a dotted path into the YAML (repeatable)."
        ),
    ] = None,
) -> None:
    """Take part in a serverless federation over the network (BrainTorrent, cyclic weight
    transfer or gossip averaging): serve this site's model to its peers and fetch theirs over
    mutual TLS, every peer checked against the project's revocation list; resumes from its last
    round when restarted with the same command."""
    from medfed.deployment.job import read_job
    from medfed.deployment.peer import PeerSettings, check_peer_certificate, run_peer
    from medfed.deployment.peer_job import PeerJob, load_peers
    from medfed.deployment.site_builder import SiteBuilder, SiteOptions
    from medfed.deployment.site_identity import PeerVerifier, ProvisionedIdentity
    from medfed.orchestration.topologies import build_topology
    from medfed.provision import CertificateGate, load_client_kit

    peer_job = read_job(job, overrides or [], PeerJob)
    _verbose()
    site_kit = load_client_kit(kit)
    name = site_kit.site
    addresses = load_peers(peers)
    if name not in addresses:
        raise typer.BadParameter(f"site '{name}' (the kit's) is not in {peers}")
    build_topology(peer_job.federation.topology, sorted(addresses), seed=peer_job.seed)  # e.g. no such graph
    revocations = crl or site_kit.crl
    if revocations is None:
        raise typer.BadParameter(f"the kit {kit} holds no crl.pem: give the project's --crl")
    check_peer_certificate(site_kit.tls)
    gate = CertificateGate(site_kit.tls.ca_certificate, revocations)
    identity = ProvisionedIdentity(site_kit.tls)
    options = SiteOptions(
        state_dir=state_dir or Path(f"medfed-site-{name}"),
        policy=_site_policy(site_kit, policy, {}),
        identity=identity,
        holdout=holdout,
    )
    settings = PeerSettings(
        name=name,
        peers={site: address for site, address in addresses.items() if site != name},
        listen=listen or addresses[name],
        state_dir=options.state_dir,
        tls=site_kit.tls,
        authenticate=gate,
        verify=PeerVerifier(gate),
        sign=lambda data: (identity.certificate, identity.sign(data)),
        ledger=_ledger_keys(site_kit, crl=revocations),
    )
    builder = SiteBuilder(_checked_site(name, data, format, holdout, False), options)
    outcome = run_peer(peer_job, settings, builder)
    console.print(
        f"site '{name}': {outcome.rounds} rounds; consensus of {', '.join(outcome.consensus_of)}"
        + (f"; held-out {outcome.metrics}" if outcome.metrics else "")
    )


def _checked_site(
    name: str, data: Path, format: str | None, holdout: float, allow_identified: bool
) -> SiteData:
    """The site's data, loaded and checked as ``medfed check-data --data`` checks them."""
    from medfed.data import load_site
    from medfed.data.consistency import client_problems
    from medfed.errors import raise_problems

    site = load_site(name, data, format, allow_identified=allow_identified)
    raise_problems(client_problems(site, holdout))
    return site


def _ledger_keys(kit: ServerKit | ClientKit | None, *, crl: Path | None = None) -> LedgerKeys | None:
    """The kit's provenance-ledger key and signer list, and ``crl`` (``None`` without them)."""
    from medfed.deployment.provenance import LedgerKeys

    if kit is None or kit.ledger_key is None or kit.signers is None:
        return None
    return LedgerKeys(kit.ledger_key, kit.signers, crl)


def status(
    state_dir: Annotated[Path, typer.Option(help="The server's --state-dir, or a site's.")],
) -> None:
    """Show a server's connected sites, current round and recent metrics; for a site's state
    folder, the privacy each of its datasets has spent over every job, and a ``medfed peer``
    site's rounds, peers' model versions, consensus and provenance chains."""
    from medfed.deployment.peer_status import peer_jobs
    from medfed.deployment.status import STATUS_FILE, read_status

    if not (state_dir / STATUS_FILE).exists():
        peers = peer_jobs(state_dir)
        for job in peers:
            _peer_job(job)
        if (state_dir / "privacy").is_dir():
            _site_privacy(state_dir)
        if peers or (state_dir / "privacy").is_dir():
            return
    now = read_status(state_dir)
    state = "finished" if now.finished else f"round {now.running_round or '-'} running"
    console.print(
        f"job [bold]{now.job}[/bold] on port {now.port}: {now.completed_rounds}/{now.total_rounds} rounds done, {state}"
    )
    console.print(
        f"connected: {', '.join(now.connected) or '-'}; waiting for: {', '.join(now.waiting_for) or '-'}"
    )
    for site, reason in sorted(now.declined.items()):
        console.print(f"declined by {site}: {reason}", markup=False, emoji=False)
    for site, reason in sorted(now.rejected.items()):
        console.print(f"update of {site} rejected: {reason}", markup=False, emoji=False)
    table = Table(title="Recent rounds")
    names = sorted({name for row in now.history for name in row.metrics})
    for column in ("round", "sites", *names):
        table.add_column(column)
    for row in now.history[-10:]:
        table.add_row(
            str(row.round), ", ".join(row.sites), *(f"{row.metrics.get(n, float('nan')):.4g}" for n in names)
        )
    console.print(table)


def _peer_job(job: PeerJobStatus) -> None:
    consensus = "-" if job.consensus_of is None else ", ".join(job.consensus_of)
    console.print(
        f"peer job [bold]{job.job}[/bold]: {job.rounds_done} rounds done; final consensus of: {consensus}"
    )
    table = Table(title=f"Sites as this peer knows them ({job.job})")
    for column in ("site", "model version", "chain entries held"):
        table.add_column(column)
    for site in sorted(job.versions.keys() | job.chain_entries.keys()):
        version = job.versions.get(site)
        table.add_row(site, "-" if version is None else str(version), str(job.chain_entries.get(site, "-")))
    console.print(table)


def _site_privacy(state_dir: Path) -> None:
    from medfed.privacy.dp.ledger import site_ledgers

    table = Table(title=f"Privacy spent by the site's data ({state_dir})")
    for column in ("dataset", "releases", "jobs", "epsilon", "budget", "delta", "accountant"):
        table.add_column(column, no_wrap=True)
    for name, ledger in site_ledgers(state_dir).items():
        latest = ledger.releases[-1] if ledger.releases else None
        table.add_row(
            name.removesuffix(".jsonl"),
            str(len(ledger.releases)),
            str(len({release.job for release in ledger.releases})),
            f"{ledger.epsilon():.4g}",
            *(
                ("-", "-", "-")
                if latest is None
                else (f"{latest.budget.epsilon:.4g}", f"{latest.budget.delta:.2g}", latest.accountant.value)
            ),
        )
    console.print(table)


def report(
    state_dir: Annotated[Path, typer.Option(help="The server's --state-dir.")],
) -> None:
    """Write a deployed job's HTML report (per-site scores, losses, privacy spent) into its
    state dir; works while the job runs, too."""
    from medfed.deployment.report import write_job_report

    console.print(f"report: {write_job_report(state_dir)}")


def _server_ckks_context(job: JobConfig, kit: ServerKit | None) -> ts.Context | None:
    """The keyless CKKS context of the server's kit, when the job encrypts its rounds."""
    if job.privacy.encryption is None:
        return None
    if kit is None or kit.ckks_context is None:
        raise typer.BadParameter(
            "the job uses CKKS encryption: give --kit with a server kit provisioned with 'encryption: ckks'"
        )
    from medfed.privacy.ckks import load_server_context

    return load_server_context(kit.ckks_context)


def _site_policy(kit: ClientKit | None, path: Path | None, flags: dict[str, object]) -> SitePolicy:
    """The strictest combination of the kit's policy file, ``--policy`` and the flags."""
    from medfed.deployment.site_policy import combined_policy

    files = [file for file in (kit.policy if kit else None, path) if file is not None]
    policy = combined_policy({k: v for k, v in flags.items() if v is not None}, files)
    logger.info("%s", policy)
    return policy


def _verbose() -> None:
    logging.getLogger("medfed").setLevel(logging.INFO)


def _warn_insecure() -> None:
    err_console.print(
        "[bold red]WARNING:[/bold red] --insecure: no TLS, no certificates; anyone on the network can "
        "read the model and impersonate a site. Never use it with real data."
    )
