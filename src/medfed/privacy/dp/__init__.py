"""Differential privacy: DP-SGD at each site (``DPTrainer``), adaptive noise and clipping
(ADP-FL), client-level DP-FedAvg with adaptive clipping (``ClientDP``), accountants, and the
parties' own noise sources (``NoiseMode``).

Importing this package imports Opacus.
"""

from medfed.privacy.dp.accounting import Accountant, Budget, Mechanism, calibrate_noise, epsilon_spent
from medfed.privacy.dp.ledger import PrivacyLedger
from medfed.privacy.dp.models import make_dp_compatible
from medfed.privacy.dp.noise import NoiseMode
from medfed.privacy.dp.trainer import AdaptiveClipping, DPTrainer, SitePrivacy

__all__ = [
    "Accountant",
    "AdaptiveClipping",
    "Budget",
    "DPTrainer",
    "Mechanism",
    "NoiseMode",
    "PrivacyLedger",
    "SitePrivacy",
    "calibrate_noise",
    "epsilon_spent",
    "make_dp_compatible",
]
