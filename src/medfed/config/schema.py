"""Pydantic schema of ``medfed simulate``'s YAML. Unknown keys and bad values are rejected with
the field named; every default gives the built-in demo."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from medfed.config.strict import StrictModel
from medfed.data.families import FAMILIES, Family
from medfed.data.preprocessing import Normalisation, Preprocessing
from medfed.data.study_plan import StudyPlan
from medfed.errors import ConfigError, UnknownNameError
from medfed.models import network_spec
from medfed.privacy.plan import (
    CkksSettings,
    ClientDPSettings,
    DPSGDSettings,
    ProtectionPlan,
    SecureSumSettings,
)

_SITE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAX_3D_SIZE = 128


class SyntheticDataConfig(StrictModel):
    """The built-in multi-site generator (see ``medfed.data.synthetic``)."""

    family: str = Field(
        "brain_lesion",
        description="brain_lesion | skin_lesion | kidney_ct | brain_tumour_mpmri (docs/data.md).",
    )
    image_size: int = Field(64, ge=16, le=512)
    dims: Literal[2, 3] = Field(2, description="2 or 3; defaults to the family's first.")
    cases_scale: float = Field(1.0, gt=0, description="Multiplies every site's number of cases.")
    binary: bool = Field(False, description="Merge every foreground label into label 1.")
    realistic: bool = Field(
        False,
        description="Store each site in its own size, spacing, orientation and format (NIfTI RAS/LAS, "
        "DICOM series, RLE-compressed DICOM), as hospitals hand data over (medfed.data.realistic).",
    )
    studies_per_patient: int = Field(
        1, ge=1, le=64, description="Consecutive cases of one patient (patients.csv): DP-SGD's unit."
    )

    @model_validator(mode="before")
    @classmethod
    def _family_dims(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dims" not in data:
            family = _family_or_none(data.get("family", "brain_lesion"))
            if family is not None:
                return {**data, "dims": family.dims[0]}
        return data

    @model_validator(mode="after")
    def _fits_family(self) -> SyntheticDataConfig:
        try:
            family = FAMILIES.create(self.family)
        except UnknownNameError as error:
            raise ValueError(str(error)) from None
        if self.dims not in family.dims:
            raise ValueError(f"family '{self.family}' supports dims {list(family.dims)}, not {self.dims}")
        if self.realistic and len(family.channels) > 1:
            raise ValueError(
                f"realistic stores sites as DICOM series, one channel each; family '{self.family}' has "
                f"{len(family.channels)}"
            )
        if self.realistic and self.studies_per_patient > 1:
            raise ValueError(
                "studies_per_patient > 1 is written for the MSD layout only; set realistic: false"
            )
        if self.dims == 3 and self.image_size > _MAX_3D_SIZE:
            raise ValueError(f"image_size must be <= {_MAX_3D_SIZE} for 3D data, got {self.image_size}")
        return self


def _family_or_none(name: Any) -> Family | None:
    """The synthetic family called ``name``, or ``None`` (the schema then reports the error)."""
    try:
        return FAMILIES.create(name) if isinstance(name, str) else None
    except UnknownNameError:
        return None


class SiteSourceConfig(StrictModel):
    """One site's real data on disk."""

    name: str
    path: Path
    format: Literal["msd", "dicom", "png", "npz"] | None = None
    allow_identified: bool = Field(
        False, description="Accept DICOM that still names its patients (default: refused; run 'medfed deid')."
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _SITE_NAME.fullmatch(name):
            raise ValueError(f"site name '{name}' may use only letters, digits, '_', '.', '-'")
        return name


class DataConfig(StrictModel):
    """Where each site's data comes from, and how it is split."""

    synthetic: SyntheticDataConfig | None = SyntheticDataConfig()
    sites: list[SiteSourceConfig] = Field(default_factory=list)
    unseen_site: str | None = Field(
        "hospital_d", description="Defaults to the synthetic family's unseen site."
    )
    unseen_site_adabn: bool = Field(
        False,
        description="Also score the unseen site after re-estimating the model's BatchNorm "
        "statistics on its images (AdaBN, test-time adaptation), as split 'unseen-adabn'",
    )
    test_fraction: float = Field(0.25, gt=0, lt=1)
    augment: bool = True

    @model_validator(mode="before")
    @classmethod
    def _family_unseen_site(cls, data: Any) -> Any:
        """Without an explicit ``unseen_site``, the synthetic family's own unseen site."""
        if not isinstance(data, dict) or "unseen_site" in data or data.get("sites"):
            return data
        synthetic = data.get("synthetic")
        name = synthetic.get("family") if isinstance(synthetic, dict) else getattr(synthetic, "family", None)
        family = _family_or_none(name)
        return data if family is None else {**data, "unseen_site": family.unseen_site}

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.sites and self.synthetic is not None:
            raise ValueError("give either 'synthetic' or 'sites', not both (set synthetic: null)")
        if not self.sites and self.synthetic is None:
            raise ValueError("no data: give 'synthetic' settings or a list of 'sites'")
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique, got {names}")
        if self.sites and self.unseen_site is not None and self.unseen_site not in names:
            raise ValueError(f"unseen_site '{self.unseen_site}' is not one of the sites {names}")
        if self.unseen_site_adabn and self.unseen_site is None:
            raise ValueError("unseen_site_adabn needs an unseen_site")
        return self


class IntensityConfig(StrictModel):
    """Intensity normalisation of one channel, or of every channel (docs/data.md, Preprocessing)."""

    mode: Literal["zscore_foreground", "ct_window"] = Field(
        "zscore_foreground",
        description="zscore_foreground (MRI, default) | ct_window (clip to window, scale to [0, 1])",
    )
    window: tuple[float, float] = Field((-1000.0, 1000.0), description="[lo, hi] of ct_window (HU)")

    @model_validator(mode="after")
    def _ordered(self) -> IntensityConfig:
        if not self.window[0] < self.window[1]:
            raise ValueError(f"window must be [lo, hi] with lo < hi, got {list(self.window)}")
        return self

    def normalisation(self) -> Normalisation:
        """The constructor arguments of this channel's normalisation."""
        return Normalisation(mode=self.mode, window=self.window)


class PreprocessingConfig(StrictModel):
    """Bringing every site's cases to a common grid (docs/data.md, Preprocessing and Study plan).

    ``preprocessing: auto`` is short for ``preprocessing: {plan: auto}``.
    """

    plan: Literal["manual", "auto"] = Field(
        "manual",
        description="auto: spacing, patch_size and intensity not given here come from the study plan",
    )
    modalities: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="One name per channel for the study plan (CT gets a CT window); null: the "
        "synthetic family's channel names, else none is CT",
    )
    max_patch_voxels: int | None = Field(
        None, ge=64, le=512**3, description="Voxel budget of a planned patch; null: 512^2 (2D), 128^3 (3D)"
    )
    spacing: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        None, min_length=2, max_length=3, description="Target voxel spacing in mm; null keeps it."
    )
    intensity: IntensityConfig | Annotated[list[IntensityConfig], Field(min_length=1, max_length=16)] = Field(
        IntensityConfig(),
        description="One normalisation for every channel, or a list: one per channel (modality).",
    )
    crop_foreground: bool = False
    patch_size: list[Annotated[int, Field(ge=4, le=512)]] | None = Field(
        None, min_length=2, max_length=3, description="Training patch and sliding-window size."
    )
    divisible_by: int | None = Field(
        None, ge=1, le=256, description="Pad whole images to a multiple; null: the U-Net's total stride."
    )

    def settings(self, model: ModelConfig) -> Preprocessing:
        """The constructor arguments of the preprocessing for ``model``.

        Raises:
            ConfigError: If ``divisible_by`` is not a multiple of the network's total stride
                (``size_multiple``), or a patch side not a multiple of the divisor.
        """
        multiple = network_spec(model.name, model.params).size_multiple
        divisor = self.divisible_by or multiple
        if divisor % multiple:
            raise ConfigError(
                f"preprocessing.divisible_by {divisor} must be a multiple of {multiple}, the "
                f"product of model.params.strides"
            )
        patch = None if self.patch_size is None else tuple(self.patch_size)
        if patch is not None and any(side % divisor for side in patch):
            raise ConfigError(
                f"preprocessing.patch_size {list(patch)} must be a multiple of {divisor} (the "
                "network's total stride, or preprocessing.divisible_by) along every axis"
            )
        return Preprocessing(
            spacing=None if self.spacing is None else tuple(self.spacing),
            intensity=tuple(entry.normalisation() for entry in self._intensities()),
            crop_foreground=self.crop_foreground,
            patch_size=patch,
            divisible_by=divisor,
            slices=model.slices,
        )

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, data: Any) -> Any:
        return {"plan": "auto"} if data == "auto" else data

    def planned(self, plan: StudyPlan) -> PreprocessingConfig:
        """This section with ``spacing``, ``patch_size`` and ``intensity`` taken from ``plan``
        where not given explicitly (with ``plan: auto``; unchanged otherwise)."""
        if self.plan != "auto":
            return self
        values = {
            "spacing": None if plan.spacing is None else list(plan.spacing),
            "patch_size": None if plan.patch_size is None else list(plan.patch_size),
            "intensity": [IntensityConfig(mode=n.mode, window=n.window) for n in plan.intensity],
        }
        update = {key: value for key, value in values.items() if key not in self.model_fields_set}
        return self.model_validate({**self.model_dump(exclude_unset=True), **update})

    def _intensities(self) -> list[IntensityConfig]:
        return self.intensity if isinstance(self.intensity, list) else [self.intensity]


class ModelConfig(StrictModel):
    """A network from the model registry and its constructor arguments."""

    name: str = "unet"
    params: dict[str, Any] = Field(default_factory=dict)
    slices: Literal["axial", "coronal", "sagittal"] | None = Field(
        None,
        description="Train a 2D network on the slices of 3D volumes cut this way (DP-SGD then "
        "protects each patient's slices together); null: the network sees whole images.",
    )

    def network_dims(self, image_dims: int) -> int:
        """The network's spatial dimensions for images of ``image_dims``: one fewer with slices."""
        return image_dims - 1 if self.slices is not None else image_dims


class TrainingConfig(StrictModel):
    """Local training at each site."""

    local_epochs: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"


TopologyName = Literal["client_server", "braintorrent", "cyclic", "gossip"]

_TOPOLOGY_SETTINGS: dict[str, tuple[str, ...]] = {
    "braintorrent": ("pulls_per_round",),
    "cyclic": ("order",),
    "gossip": ("graph", "degree"),
}


class TopologyConfig(StrictModel):
    """Who talks to whom (docs/peer-to-peer.md): a server, or peers without one. A plain name
    (``topology: gossip``) takes the defaults; each setting belongs to one topology."""

    name: TopologyName = "client_server"
    pulls_per_round: int | None = Field(
        None, ge=1, le=100_000, description="braintorrent: pulls per round (default: one per site)."
    )
    order: Literal["fixed", "random"] = Field("fixed", description="cyclic: the order of each cycle.")
    graph: Literal["ring", "random_regular", "complete"] = Field("ring", description="gossip: the graph.")
    degree: int = Field(2, ge=1, le=1000, description="gossip: neighbours per site in random_regular.")

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _settings_of_the_topology(self) -> TopologyConfig:
        own = _TOPOLOGY_SETTINGS.get(self.name, ())
        foreign = sorted(
            key
            for key, field in type(self).model_fields.items()
            if key not in (*own, "name") and getattr(self, key) != field.default
        )
        if foreign:
            raise ValueError(f"{foreign} do not apply to topology '{self.name}' (its settings: {list(own)})")
        return self

    @property
    def peer_to_peer(self) -> bool:
        """Whether the sites federate without a server."""
        return self.name != "client_server"


class FederationConfig(StrictModel):
    """Rounds and participation."""

    rounds: int = Field(12, ge=1)
    fraction: float = Field(1.0, gt=0, le=1)
    min_sites: int = Field(1, ge=1)
    evaluate_every: int = Field(
        1, ge=0, description="Evaluate held-out sets every N rounds (0: after the last round only)."
    )
    keep_last: int | None = Field(
        3, ge=1, description="Round checkpoints kept per experiment (the newest); null keeps all."
    )
    topology: TopologyConfig = Field(
        TopologyConfig(), description="client_server | braintorrent | cyclic | gossip, with settings."
    )
    engine: Literal["in_memory", "ray"] = Field(
        "in_memory",
        description="Where simulated sites run: in this process, or as Ray actors (see 'ray'); "
        "simulations only.",
    )

    def evaluates_after(self, round: int) -> bool:
        """Whether held-out cases are evaluated after ``round``: every ``evaluate_every``
        rounds, and always after the last one (the rule of simulation and deployment alike)."""
        every = self.evaluate_every
        return round == self.rounds or (every > 0 and round % every == 0)


class RobustConfig(BaseModel):
    """A robust aggregation rule by name (``median``, ``trimmed_mean``, ``krum``,
    ``geometric_median``, ``norm_bound``); every other key is an argument of the rule."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rule: str

    @property
    def params(self) -> dict[str, Any]:
        """The rule's arguments."""
        return dict(self.model_extra or {})


class StrategyConfig(BaseModel):
    """A strategy by registry name; every other key is a constructor argument."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    label: str | None = Field(None, description="Name shown in results; defaults to 'name'.")
    robust: RobustConfig | None = Field(
        None, description="Aggregate the sites' updates with a robust rule (see medfed.strategies.robust)."
    )

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return dict(self.model_extra or {})

    @property
    def display_name(self) -> str:
        """The experiment's name in the run directory and the report."""
        return self.label or self.name


class BaselinesConfig(StrictModel):
    """Comparisons that only a simulation can make."""

    centralized: bool = True
    local: bool = True


class SiteBudgetConfig(StrictModel):
    """One site's own differential-privacy budget; ``delta`` defaults to ``privacy.delta``."""

    epsilon: float = Field(gt=0)
    delta: float | None = Field(None, gt=0, lt=1)


class DPSGDConfig(StrictModel):
    """DP-SGD at every site, per patient (see ``medfed.privacy.dp.DPTrainer``)."""

    noise: Literal["calibrated", "fixed"] = Field(
        "calibrated", description="'calibrated' spends each site's budget exactly by the last round."
    )
    noise_multiplier: float | None = Field(None, gt=0, description="Required when noise is 'fixed'.")
    max_grad_norm: float = Field(1.0, gt=0, description="Per-patient clip (the initial one if adaptive).")
    clipping: Literal["fixed", "adaptive"] = "fixed"
    target_quantile: float = Field(0.5, gt=0, lt=1)
    clip_lr: float = Field(0.2, gt=0)
    count_budget_fraction: float = Field(0.05, gt=0, lt=1)
    augmentation_multiplicity: int = Field(
        1,
        ge=1,
        le=32,
        description="K augmented views of every sampled case, their per-sample gradients "
        "averaged before clipping (De et al. 2022): same sensitivity C and epsilon, K times the "
        "compute. K > 1 needs data.augment.",
    )
    ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Decay of the exponential moving average of the parameters over a round's "
        "DP steps, returned by the site in place of the last iterate (post-processing: no "
        "privacy cost); null keeps the last iterate.",
    )
    secure_mode: bool = Field(
        True,
        description="Noise and sampling from a CSPRNG keyed from OS entropy with attack-resistant "
        "Gaussians; false (simulation only) uses torch's generator seeded from OS entropy. "
        "Deployed sites always use the secure source.",
    )

    @model_validator(mode="after")
    def _noise_given_once(self) -> DPSGDConfig:
        if (self.noise == "fixed") != (self.noise_multiplier is not None):
            raise ValueError("give noise_multiplier exactly when noise is 'fixed'")
        return self


class ClientDPConfig(StrictModel):
    """Client-level DP-FedAvg with adaptive clipping around every federated strategy."""

    noise_multiplier: float = Field(ge=0)
    clip: float = Field(1.0, gt=0)
    adaptive: bool = True
    target_quantile: float = Field(0.5, gt=0, lt=1)
    clip_lr: float = Field(0.2, gt=0)
    count_budget_fraction: float = Field(0.05, gt=0, lt=1)


class SecureAggregationConfig(StrictModel):
    """Secure aggregation (Bonawitz et al. 2017) of every federated strategy's round: the server
    sees only the sample-weighted mean (see ``medfed.privacy.secagg``)."""

    threshold_fraction: float = Field(
        0.67,
        ge=0.5,
        lt=1,
        description="Shamir threshold t = floor(fraction * n) + 1 of the n answering sites; "
        "up to n - t may drop out during the protocol.",
    )


class EncryptionConfig(StrictModel):
    """Encrypted aggregation of every federated strategy's round: the sites encrypt their
    updates, the server adds ciphertexts without a key (see ``medfed.privacy.ckks_rounds``)."""

    scheme: Literal["ckks"] = Field(description="Homomorphic encryption scheme.")


class PrivacyConfig(StrictModel):
    """Differential privacy, secure aggregation and encryption; each off unless its section is
    given."""

    accountant: Literal["rdp", "prv"] = Field(
        "prv",
        description="Privacy accountant: prv (tight, the default) or rdp (looser, 8-15 % higher epsilon).",
    )
    epsilon: float = Field(8.0, gt=0, description="Every site's budget unless 'sites' says otherwise.")
    delta: float = Field(1e-5, gt=0, lt=1)
    sites: dict[str, SiteBudgetConfig] = Field(default_factory=dict)
    dp_sgd: DPSGDConfig | None = None
    client_dp: ClientDPConfig | None = None
    secure_aggregation: SecureAggregationConfig | None = None
    encryption: EncryptionConfig | None = None
    reproducible_noise: bool = Field(
        False,
        description="Derive DP noise and sampling from the run's seed so that runs repeat bit for "
        "bit. Anyone who knows the seed can remove the noise: the run is NOT PRIVATE. "
        "'medfed simulate' only; a deployed job is refused.",
    )

    def site_budget(self, site: str) -> tuple[float, float]:
        """``site``'s ``(epsilon, delta)``: its entry in ``sites``, else the defaults."""
        own = self.sites.get(site)
        if own is None:
            return self.epsilon, self.delta
        return own.epsilon, self.delta if own.delta is None else own.delta

    def in_effect(self) -> dict[str, Any]:
        """This section as JSON values without the settings that take no effect: the budget
        (``accountant``, ``epsilon``, ``delta``, ``sites``) only under DP-SGD or client-level DP,
        each protection only when on; ``{}`` for a run without privacy (what a report shows)."""
        dumped = self.model_dump(mode="json")
        budget = ("accountant", "epsilon", "delta", "sites")
        on = self.dp_sgd is not None or self.client_dp is not None
        return {
            name: value
            for name, value in dumped.items()
            if value is not None and value is not False and value != {} and (on or name not in budget)
        }

    def plan(self) -> ProtectionPlan:
        """This section as plain constructor arguments (``medfed.privacy`` takes nothing else)."""
        dp, client = self.dp_sgd, self.client_dp
        secure_sum: SecureSumSettings | CkksSettings | None = None
        if self.secure_aggregation is not None:
            secure_sum = SecureSumSettings(self.secure_aggregation.threshold_fraction)
        elif self.encryption is not None:
            secure_sum = CkksSettings()
        return ProtectionPlan(
            accountant=self.accountant,
            epsilon=self.epsilon,
            delta=self.delta,
            site_budgets={site: self.site_budget(site) for site in self.sites},
            dp_sgd=None
            if dp is None
            else DPSGDSettings(
                noise_multiplier=dp.noise_multiplier,
                max_grad_norm=dp.max_grad_norm,
                adaptive=(dp.target_quantile, dp.clip_lr, dp.count_budget_fraction)
                if dp.clipping == "adaptive"
                else None,
                secure_mode=dp.secure_mode,
                augmentation_multiplicity=dp.augmentation_multiplicity,
                ema=dp.ema,
            ),
            client_dp=None
            if client is None
            else ClientDPSettings(
                noise_multiplier=client.noise_multiplier,
                clip=client.clip,
                target_quantile=client.target_quantile if client.adaptive else None,
                clip_lr=client.clip_lr,
                count_budget_fraction=client.count_budget_fraction,
            ),
            secure_sum=secure_sum,
            reproducible_noise=self.reproducible_noise,
        )

    @model_validator(mode="after")
    def _secure_aggregation_without_client_dp(self) -> PrivacyConfig:
        if self.secure_aggregation is not None and self.client_dp is not None:
            raise ValueError(
                "secure_aggregation cannot be combined with client_dp: client-level DP clips "
                "each site's update on the server, which secure aggregation never reveals"
            )
        return self

    @model_validator(mode="after")
    def _encryption_alone(self) -> PrivacyConfig:
        if self.encryption is not None and self.secure_aggregation is not None:
            raise ValueError(
                "encryption cannot be combined with secure_aggregation: each already hides the "
                "sites' updates from the server; choose one"
            )
        if self.encryption is not None and self.client_dp is not None:
            raise ValueError(
                "encryption cannot be combined with client_dp: client-level DP clips each "
                "site's update on the server, which encryption never reveals"
            )
        return self


PEER_STRATEGIES = ("fedavg", "fedprox")
"""The strategies whose site half a peer-to-peer topology runs (they have no server state)."""


def check_serverless(topology: str, strategies: Sequence[StrategyConfig], privacy: PrivacyConfig) -> None:
    """Raises ``ValueError`` unless ``strategies`` and ``privacy`` run without a server (in
    simulation and in a peer-to-peer deployment alike): only FedAvg's and FedProx's site
    halves, and no server-side protection."""
    wrong = [s.display_name for s in strategies if s.name not in PEER_STRATEGIES or s.robust]
    if wrong:
        raise ValueError(
            f"topology '{topology}' runs only strategies {list(PEER_STRATEGIES)} without 'robust'; "
            f"change {wrong}"
        )
    server_side = {
        "client_dp": privacy.client_dp,
        "secure_aggregation": privacy.secure_aggregation,
        "encryption": privacy.encryption,
    }
    given = [key for key, section in server_side.items() if section is not None]
    if given:
        raise ValueError(f"topology '{topology}' has no server for privacy {given}; use dp_sgd")


CLEAN_SUFFIX = "-clean"
"""Appended to a strategy's label for its run without the configured attack."""

AttackKind = Literal["sign_flip", "scale", "gaussian", "alie", "label_flip", "backdoor"]


class PoisoningConfig(StrictModel):
    """Malicious sites in a simulation (see ``medfed.attacks.poisoning``). Each federated
    strategy runs attacked; with ``clean_runs`` each also runs once without the attack."""

    sites: list[str] = Field(min_length=1, description="The malicious training sites.")
    kind: AttackKind
    factor: float = Field(
        10.0,
        gt=0,
        le=1e6,
        description="sign_flip sends -factor x its update; scale sends factor x its update.",
    )
    noise_std: float = Field(
        0.5, gt=0, le=1e6, description="gaussian: the update is N(0, noise_std^2) noise."
    )
    z: float | None = Field(
        None,
        gt=0,
        le=100,
        description="alie: deviations in benign standard deviations (default: Baruch et al.'s z_max).",
    )
    target: int = Field(0, ge=0, description="backdoor: the class triggered images are labelled with.")
    patch: int = Field(3, ge=1, le=64, description="backdoor: side of the square trigger patch, in voxels.")
    poison_fraction: float = Field(
        0.5, gt=0, le=1, description="backdoor: fraction of the site's cases stamped."
    )
    clean_runs: bool = True

    @field_validator("sites")
    @classmethod
    def _distinct(cls, sites: list[str]) -> list[str]:
        if len(set(sites)) != len(sites):
            raise ValueError(f"attack sites must be distinct, got {sites}")
        return sites


class RayConfig(StrictModel):
    """Where and with what resources simulated sites run when ``federation.engine`` is ``ray``."""

    address: str | None = Field(
        None, description="Ray cluster to join ('auto', 'ray://head:10001'); null starts a local Ray."
    )
    num_cpus_per_site: float = Field(1.0, gt=0, le=1024, description="CPUs each site trains with.")
    num_gpus_per_site: float = Field(0.0, ge=0, le=64, description="GPUs each site trains with.")
    max_actors: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Most site actors (each hosts several sites); null: as many as the cluster holds.",
    )


class TrackingConfig(StrictModel):
    """Experiment trackers written next to the run (``tensorboard/``, ``mlflow/``); off by default."""

    tensorboard: bool = Field(
        False, description="TensorBoard event files (pip install 'medfed[tensorboard]')."
    )
    mlflow: bool = Field(
        False, description="A local MLflow file store, no server (pip install 'medfed[mlflow]')."
    )


MAX_SEED = 2**32 - 1
"""The largest seed of ``seeds`` (numpy's and torch's generators take any of 0..2**32-1)."""
MAX_SEEDS = 100


class SimulationConfig(StrictModel):
    """Everything ``medfed simulate`` needs; all defaults together are the built-in demo.

    ``seed`` runs every experiment once; ``seeds`` (not both) runs every experiment once per
    seed, and ``seed`` then holds the lowest of them.
    """

    seed: int = 0
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SEEDS,
        description="Run every experiment once per seed (data split, init, training) and report "
        "mean ± sd over them; not with 'seed'",
    )
    task: Literal["segmentation", "classification"] = "segmentation"
    output_dir: Path = Path("runs/demo")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    federation: FederationConfig = FederationConfig()
    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig(name="fedavg"), StrategyConfig(name="fedprox", mu=0.01)]
    )
    baselines: BaselinesConfig = BaselinesConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    attack: PoisoningConfig | None = None
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    ray: RayConfig = RayConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _seed_or_seeds(cls, data: Any) -> Any:
        """``seed`` or ``seeds``, not both; with ``seeds``, ``seed`` is the lowest of them."""
        if not isinstance(data, dict) or data.get("seeds") is None:
            return data
        if "seed" in data:
            raise ValueError(
                f"give 'seed' (one run) or 'seeds' (one run per seed), not both: "
                f"seed={data['seed']!r}, seeds={data['seeds']!r}"
            )
        seeds = data["seeds"]
        whole = isinstance(seeds, list) and seeds and all(type(seed) is int for seed in seeds)
        return {**data, "seed": min(seeds)} if whole else data

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @model_serializer(mode="wrap")
    def _one_seed_key(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped with ``seeds`` or with ``seed``, so that the dump validates again."""
        dumped: dict[str, Any] = handler(self)
        dumped.pop("seed" if self.seeds is not None else "seeds", None)
        return dumped

    def run_seeds(self) -> list[int]:
        """The seeds to run every experiment with, in order: ``seeds``, or ``[seed]``."""
        return [self.seed] if self.seeds is None else list(self.seeds)

    @model_validator(mode="after")
    def _ray_without_dp_sgd(self) -> SimulationConfig:
        if self.federation.engine == "ray" and self.privacy.dp_sgd is not None:
            raise ValueError(
                "federation.engine 'ray' does not run privacy.dp_sgd (each site's privacy ledger "
                "lives in the run directory of the driver): use engine 'in_memory'"
            )
        return self

    @model_validator(mode="after")
    def _views_need_augmentation(self) -> SimulationConfig:
        dp = self.privacy.dp_sgd
        if dp is not None and dp.augmentation_multiplicity > 1 and not self.data.augment:
            raise ValueError(
                f"privacy.dp_sgd.augmentation_multiplicity {dp.augmentation_multiplicity} averages "
                "augmented views of each case, but data.augment is false (the views would be "
                "identical): set data.augment: true or augmentation_multiplicity: 1"
            )
        return self

    @model_validator(mode="after")
    def _unique_experiments(self) -> SimulationConfig:
        labels = [strategy.display_name for strategy in self.strategies]
        if self.attack is not None and self.attack.clean_runs:
            labels += [f"{label}{CLEAN_SUFFIX}" for label in labels]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        if duplicated:
            raise ValueError(f"strategies {duplicated} appear twice: give each a distinct 'label'")
        return self

    @model_validator(mode="after")
    def _peer_to_peer_fits(self) -> SimulationConfig:
        """Without a server there is no server half: only FedAvg's and FedProx's site halves
        apply, and the server-side protections and the attack simulator have nowhere to run."""
        topology = self.federation.topology.name
        if topology == "client_server":
            return self
        check_serverless(topology, self.strategies, self.privacy)
        if self.attack is not None:
            raise ValueError(f"topology '{topology}' cannot be combined with 'attack' (client_server only)")
        if self.federation.fraction != 1.0:
            raise ValueError(f"topology '{topology}' decides who trains: leave federation.fraction at 1")
        return self
