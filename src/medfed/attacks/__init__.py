"""Privacy attacks on federated updates, to measure what the privacy defences protect.

The gradient-inversion harness (Geiping et al. 2020) reconstructs a site's training images from
its update with no protection, with DP noise and with secure aggregation, and scores them.
"""

from medfed.attacks.defences import clip_by_norm, gaussian_mechanism, secure_sum
from medfed.attacks.harness import (
    AttackConfig,
    AttackOutcome,
    Scenario,
    ScenarioResult,
    attack_scenario,
    run_attack,
    scenarios_for,
)
from medfed.attacks.inversion import (
    Inversion,
    InversionConfig,
    cosine_distance,
    invert_gradients,
    model_gradients,
    total_variation,
)
from medfed.attacks.labels import infer_label_idlg
from medfed.attacks.metrics import Match, match_reconstructions
from medfed.attacks.models import VICTIMS, build_victim
from medfed.attacks.report import ReportFiles, write_outputs

__all__ = [
    "VICTIMS",
    "AttackConfig",
    "AttackOutcome",
    "Inversion",
    "InversionConfig",
    "Match",
    "ReportFiles",
    "Scenario",
    "ScenarioResult",
    "attack_scenario",
    "build_victim",
    "clip_by_norm",
    "cosine_distance",
    "gaussian_mechanism",
    "infer_label_idlg",
    "invert_gradients",
    "match_reconstructions",
    "model_gradients",
    "run_attack",
    "scenarios_for",
    "secure_sum",
    "total_variation",
    "write_outputs",
]
