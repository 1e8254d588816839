"""Signed keys and the ConsistencyCheck with the project PKI: a server can neither slip clients
of its own into a secure aggregation nor tell survivors different stories (Bonawitz et al.
2017, malicious server), while honest sites still sum."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pytest

from medfed.deployment.site_identity import ProvisionedIdentity
from medfed.privacy.secagg import SecAggServer, SecureAggregationError, new_config
from medfed.privacy.secagg.authentication import KeyAuthenticator
from medfed.privacy.secagg.encoding import DEFAULT_CODE
from medfed.privacy.secagg.messages import AdvertiseKeys, SecAggInvitation, SignedSurvivors
from medfed.privacy.secagg.rounds import UNMASK_SIGNED, Participant, serve_aggregation
from medfed.privacy.secagg.site_machine import SecAggClient
from medfed.provision.certs import Identity, create_ca, issue, write_identity
from medfed.transport.tls import TlsFiles

SITES = ("hospital_a", "hospital_b", "hospital_c")
INPUTS = {1: np.array([1.0, 2.0]), 2: np.array([3.0, 4.0]), 3: np.array([5.0, 6.0])}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ProvisionedIdentity]:
    """Identities issued by one project CA (three sites and the server), and by a foreign CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca, foreign = create_ca("project", days=10), create_ca("intruder", days=10)
    write_identity(ca, folder / "ca.crt", folder / "ca.key")

    def kit(name: str, identity: Identity) -> ProvisionedIdentity:
        write_identity(identity, folder / f"{name}.crt", folder / f"{name}.key")
        return ProvisionedIdentity(
            TlsFiles(folder / f"{name}.crt", folder / f"{name}.key", folder / "ca.crt")
        )

    identities = {site: kit(site, issue(ca, site, role="client", days=10)) for site in SITES}
    identities["server"] = kit("server", issue(ca, "server", role="server", days=10))
    identities["foreign"] = kit("foreign", issue(foreign, "hospital_c", role="client", days=10))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    identities["expired"] = kit("expired", issue(ca, "hospital_c", role="client", days=1, not_before=start))
    return identities


Tamper = Callable[[str, int, object], object]


def _aggregate(
    invitations: Mapping[int, SecAggInvitation],
    signers: Mapping[int, KeyAuthenticator | None],
    adverts: Mapping[int, AdvertiseKeys] | None = None,
    tamper: Tamper = lambda step, client, message: message,
) -> np.ndarray:
    """Runs the aggregation (with its ConsistencyCheck) with honest participants; ``adverts``
    replaces some clients' keys and ``tamper`` may alter what the server sends."""
    config = next(iter(invitations.values())).config
    participants = {
        client: Participant(invitation, INPUTS[client], signers[client])
        for client, invitation in invitations.items()
    }
    sent = {client: participant.start() for client, participant in participants.items()}
    sent.update(adverts or {})

    def exchange(step: str, outgoing: Mapping[int, object]) -> dict[int, object]:
        return {
            client: participants[client].answer(tamper(step, client, message))
            for client, message in outgoing.items()
        }

    return serve_aggregation(
        SecAggServer(config), [sent[client] for client in sorted(sent)], exchange, consistency=True
    )


def _invitations(names: tuple[str, ...] = SITES) -> dict[int, SecAggInvitation]:
    config = new_config(client_ids=range(1, len(names) + 1), threshold=2, vector_length=2, code=DEFAULT_CODE)
    return {client: SecAggInvitation(config, client, names) for client in config.client_ids}


def test_sites_with_provisioned_identities_sum_exactly(pki: dict[str, ProvisionedIdentity]) -> None:
    np.testing.assert_allclose(_aggregate(_invitations(), _signers(pki)), [9.0, 12.0], atol=1e-6)


def _forged(
    invitations: dict[int, SecAggInvitation], client: int, signer: KeyAuthenticator | None
) -> AdvertiseKeys:
    """Keys the server made up for ``client``, signed with ``signer`` when given."""
    return SecAggClient(
        client, invitations[client].config, authenticator=signer, participants=SITES
    ).advertise_keys()


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        (None, "not issued by the project CA"),  # unsigned keys
        ("server", "not a site"),  # the server's own certificate
        ("foreign", "not issued by the project CA"),  # another CA's certificate for the name
        ("expired", "expired"),
        ("hospital_b", "names 'hospital_b'"),  # a real site's certificate for another participant
    ],
)
def test_a_participant_the_server_made_up_is_refused_by_every_honest_site(
    pki: dict[str, ProvisionedIdentity], signer: str | None, reason: str
) -> None:
    invitations = _invitations()
    honest = {1: pki["hospital_a"], 2: pki["hospital_b"]}
    fake = _forged(invitations, 3, None if signer is None else pki[signer])
    with pytest.raises(
        SecureAggregationError, match=f"participant 'hospital_c' is not authenticated: .*{reason}"
    ):
        _aggregate({1: invitations[1], 2: invitations[2]}, honest, adverts={3: fake})


def test_keys_swapped_under_a_real_signature_are_refused(pki: dict[str, ProvisionedIdentity]) -> None:
    invitations = _invitations()
    signers = _signers(pki)
    real = Participant(invitations[3], INPUTS[3], pki["hospital_c"]).start()
    mine = _forged(invitations, 3, None)
    swapped = replace(real, c_public=mine.c_public, s_public=mine.s_public)  # server in the middle
    with pytest.raises(SecureAggregationError, match="signature does not verify"):
        _aggregate({1: invitations[1], 2: invitations[2]}, signers, adverts={3: swapped})


def test_an_authenticated_site_refuses_an_invitation_without_names(
    pki: dict[str, ProvisionedIdentity],
) -> None:
    anonymous = _invitations()[1]
    with pytest.raises(SecureAggregationError, match="does not name every participant"):
        Participant(replace(anonymous, participants=()), INPUTS[1], pki["hospital_a"])


def _signers(pki: dict[str, ProvisionedIdentity]) -> dict[int, KeyAuthenticator | None]:
    return {client: pki[site] for client, site in enumerate(SITES, start=1)}


def test_a_site_unmasks_only_when_t_survivors_signed_the_list_it_signed(
    pki: dict[str, ProvisionedIdentity],
) -> None:
    def forge_two(step: str, client: int, message: object) -> object:
        if step != UNMASK_SIGNED or client != 1:
            return message
        assert isinstance(message, SignedSurvivors)
        forged = tuple(
            replace(entry, signature=b"forged") if entry.sender != 1 else entry
            for entry in message.signatures
        )
        return replace(message, signatures=forged)

    with pytest.raises(SecureAggregationError, match="consistency check: only 1 clients left"):
        _aggregate(_invitations(), _signers(pki), tamper=forge_two)

    def another_list(step: str, client: int, message: object) -> object:
        if step == UNMASK_SIGNED and client == 1:
            assert isinstance(message, SignedSurvivors)
            return replace(message, survivors=(1, 2))
        return message

    with pytest.raises(SecureAggregationError, match="differs from the one this client signed"):
        _aggregate(_invitations(), _signers(pki), tamper=another_list)


def test_an_authenticated_site_refuses_to_unmask_without_the_consistency_check(
    pki: dict[str, ProvisionedIdentity],
) -> None:
    invitations = _invitations()
    participants = {
        client: Participant(invitations[client], INPUTS[client], signer)
        for client, signer in _signers(pki).items()
    }
    adverts = [participant.start() for participant in participants.values()]

    def exchange(step: str, outgoing: Mapping[int, object]) -> dict[int, object]:
        return {client: participants[client].answer(message) for client, message in outgoing.items()}

    with pytest.raises(SecureAggregationError, match="only after the consistency check"):
        serve_aggregation(SecAggServer(invitations[1].config), adverts, exchange)  # no consistency
