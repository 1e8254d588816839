"""What a deployed site builds from the job the server sends, once the job passes the site's
own privacy policy: its ``LocalSite`` (the same registries, trainer and strategy as ``medfed
simulate``, with DP-SGD under the stricter of the site's and the job's budget), its evaluator on
held-out cases and its part of a protected round; and the site's own files (private strategy
state, privacy ledger), which survive a restart of the client.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import tenseal as ts

from medfed.data import SiteData, build_dataset
from medfed.data.consistency import ModelInputs, study_problems
from medfed.deployment.evaluation import DEFAULT_HOLDOUT, HeldOutEvaluator, holdout_split
from medfed.deployment.job import SiteJob, parse_site_job
from medfed.deployment.planning import site_fingerprint
from medfed.deployment.site_policy import SitePolicy, check_job, site_privacy
from medfed.errors import ConfigError, PolicyRefusal, raise_problems
from medfed.models import build_model, network_spec
from medfed.orchestration.checkpoint import load_site_state, save_site_state
from medfed.orchestration.grid import SiteProtocol
from medfed.orchestration.site import LocalSite
from medfed.privacy.secagg.authentication import KeyAuthenticator
from medfed.privacy.secagg.messages import SecAggInvitation
from medfed.privacy.setup import prepare_model, site_protocol, site_trainer
from medfed.strategies.registry import STRATEGIES
from medfed.training import LocalTrainer, TrainSettings
from medfed.training.trainer import Trainer
from medfed.transport.client import FetchedTask
from medfed.transport.protobuf import decode_message
from medfed.types import SiteState, TrainResult, TrainTask

logger = logging.getLogger(__name__)


STATE_FILE = "site_state.safetensors"
"""The site's private strategy state in ``state_dir`` (e.g. SCAFFOLD's control variate)."""


@dataclass(frozen=True)
class SiteOptions:
    """What a site decides for itself, whatever the server's job says.

    Attributes:
        state_dir: The site's own files: the privacy ledger of its dataset
            (``privacy/<site>-<data fingerprint>.jsonl``, append-only, shared by every job on the
            same cases: privacy spent stays spent) and its private strategy state
            (``site_state.safetensors``, saved after every accepted update and reloaded by a
            restarted client for the same job).
        policy: The site's own privacy policy: jobs weaker than it are refused, and its
            budget bounds the job's.
        ckks_context: The sites' shared secret-key CKKS context (``ckks.ctx`` of the kit).
        holdout: Fraction of the site's cases kept out of training to evaluate the global
            model on, in ``[0, 1)``; 0 trains on every case and evaluates nothing.
        identity: The site's provisioned identity for secure aggregation (signs its keys,
            checks the other participants'); ``None`` takes part anonymously (``--insecure``).
    """

    state_dir: Path
    policy: SitePolicy = field(default_factory=SitePolicy)
    ckks_context: ts.Context | None = None
    holdout: float = DEFAULT_HOLDOUT
    identity: KeyAuthenticator | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")


class SiteBuilder:
    """Builds the site's ``LocalSite`` from the job the server sends, with the same registries
    and trainer as ``medfed simulate``; rebuilt (fresh site state) if the job changes.

    Args:
        data: This site's cases: ``options.holdout`` of them (chosen by ``split_cases`` with the
            job's seed) are kept for evaluation, the others train.
        options: The site's own settings (state folder, privacy policy, CKKS key, holdout).
    """

    def __init__(self, data: SiteData, options: SiteOptions) -> None:
        self.data = data
        self.options = options
        self._job_json: str | None = None
        self._site: LocalSite | None = None
        self._evaluator: HeldOutEvaluator | None = None

    def site_for(self, job_json: str) -> LocalSite:
        """The ``LocalSite`` for the job described by ``job_json``, with the private state this
        site saved for the same job before a restart.

        Raises:
            PolicyRefusal: The job is weaker than the site's policy (nothing is built).
            ConfigError: The job is invalid.
            DataError: The site's data do not fit the job's model (``check_data_fits``).
        """
        if self._site is None or job_json != self._job_json:
            job = self._allowed_job(job_json)
            check_data_fits(self.data, job)
            train, held_out = self._split(job)
            site = build_local_site(train, job, self.options, dataset=self.data)
            site.state = self._saved_state(job_json) or site.state
            self._site, self._job_json = site, job_json
            self._evaluator = HeldOutEvaluator(held_out, job)
        return self._site

    def train(self, job_json: str, task: TrainTask) -> TrainResult:
        """This site's update for ``task``, with the metrics its policy releases (a DP-SGD
        site's privacy spent, ``epsilon`` at ``delta``, from its budget ledger among them).

        Raises:
            PolicyRefusal: The job is weaker than the site's policy (nothing trained).
            PrivacyBudgetExceeded: The round would exceed the site's budget (nothing trained).
        """
        site = self.site_for(job_json)
        logger.info("round %d: training", task.round)
        result = site.train(task)
        if not self.options.policy.release_training_metrics:
            return replace(result, metrics={})
        spent = getattr(site.trainer, "spent", None)  # a DPTrainer's (Opacus imported only then)
        if spent is None:
            return result
        return replace(result, metrics={**result.metrics, **spent()})

    def evaluate(self, job_json: str, task: TrainTask) -> dict[str, float]:
        """This site's metrics of the global model in ``task`` on its held-out cases, with
        the site's own part of the model (e.g. FedBN's norm layers); training state untouched.

        Raises:
            PolicyRefusal: The job is weaker than the site's policy, or the policy does not
                release evaluation metrics.
            DataError: This site holds no case out, or no metric is defined on them.
        """
        if not self.options.policy.release_eval_metrics:
            raise PolicyRefusal(self.data.name, ["this site does not release evaluation metrics"])
        site = self.site_for(job_json)
        assert self._evaluator is not None  # built with the site
        return self._evaluator.evaluate(site.strategy.site_model(task.weights, site.state), task.round)

    def fingerprint(self, job_json: str) -> bytes:
        """This site's fingerprint over its training cases, for the study plan (JSON).

        Raises:
            PolicyRefusal: The job is weaker than the site's policy.
            ConfigError: The job is invalid.
        """
        job = self._allowed_job(job_json)
        train, _ = holdout_split(self.data, self.options.holdout, job.seed)
        return site_fingerprint(train, job)

    def _allowed_job(self, job_json: str) -> SiteJob:
        """The job in ``job_json``, unless it is weaker than the site's policy (``PolicyRefusal``)."""
        job = parse_site_job(job_json)
        weaknesses = check_job(self.options.policy, job.privacy)
        if weaknesses:
            raise PolicyRefusal(self.data.name, weaknesses)
        return job

    def _split(self, job: SiteJob) -> tuple[SiteData, SiteData]:
        train, held_out = holdout_split(self.data, self.options.holdout, job.seed)
        if self.options.holdout > 0 and not held_out.cases:
            logger.warning(
                "site '%s' has %d case(s), too few to hold any out: it trains on all of them and "
                "evaluates nothing",
                self.data.name,
                len(self.data.cases),
            )
        else:
            logger.info(
                "training on %d cases, %d held out for evaluation", len(train.cases), len(held_out.cases)
            )
        return train, held_out

    def save_state(self) -> None:
        """Saves the current site's private state (after the server accepted its update)."""
        if self._site is not None and self._job_json is not None:
            metadata = {"site": self.data.name, "job": _fingerprint(self._job_json)}
            save_site_state(self.options.state_dir / STATE_FILE, self._site.state, metadata)

    def _saved_state(self, job_json: str) -> SiteState | None:
        path = self.options.state_dir / STATE_FILE
        if not path.exists():
            return None
        state, metadata = load_site_state(path)
        if metadata.get("site") != self.data.name or metadata.get("job") != _fingerprint(job_json):
            logger.info("site state in '%s' belongs to another job; starting fresh", path)
            return None
        logger.info("resuming with the site state saved in '%s'", path)
        return state

    def protected_round(self, fetched: FetchedTask, result: TrainResult) -> SiteProtocol | None:
        """The site's half of a secure or encrypted round (``None`` for a plain round), opened
        by the same ``site_protocol`` as a simulated site's.

        Raises:
            ConfigError: The job uses CKKS but this site has no CKKS context.
            PayloadError: The invitation that came with the task is malformed.
        """
        privacy = parse_site_job(fetched.job_json).privacy.plan()
        open_protocol = site_protocol(
            privacy,
            site=self.data.name,
            ckks_context=self.options.ckks_context,
            identity=self.options.identity,
        )
        if open_protocol is None:
            return None
        invitation = decode_message(SecAggInvitation, fetched.protocol) if fetched.protocol else None
        return open_protocol(fetched.task, invitation, result)


def check_data_fits(data: SiteData, job: SiteJob) -> None:
    """Raises ``DataError`` (``DataProblems`` for several) where the site's images or classes do
    not fit the job's model: dimensionality, channels, a mask value or label beyond its classes.
    """
    spec = network_spec(job.model.name, job.model.params)
    image_dims = spec.spatial_dims + (job.model.slices is not None)
    model = ModelInputs(in_channels=spec.in_channels, spatial_dims=image_dims, classes=spec.out_channels)
    raise_problems(study_problems({data.name: data}, task=job.task, model=model))


def build_local_site(
    data: SiteData, job: SiteJob, options: SiteOptions | None = None, *, dataset: SiteData | None = None
) -> LocalSite:
    """A ``LocalSite`` training ``job``'s model with ``job``'s strategy on ``data``; with DP-SGD
    (under the stricter of the site's and the job's budget, with the ledger of ``dataset``, all
    its cases: ``data`` by default) when the job asks for it."""
    preprocessing = job.preprocessing.settings(job.model)
    cases = build_dataset(
        data.cases,
        task=job.task,
        augment=job.augment,
        seed=job.seed,
        site=data.name,
        preprocessing=preprocessing,
        training=True,
    )
    inner = LocalTrainer(task=job.task, settings=TrainSettings(**job.training.model_dump()))
    trainer: Trainer = (
        inner if job.privacy.dp_sgd is None else _dp_trainer(dataset or data, job, inner, options)
    )
    return LocalSite(
        data.name,
        cases,
        model=prepare_model(job.privacy.plan(), build_model(job.model.name, job.model.params, seed=job.seed)),
        trainer=trainer,
        strategy=STRATEGIES.create(job.strategy.name, **job.strategy.params),
        seed=job.seed,
    )


def _dp_trainer(data: SiteData, job: SiteJob, inner: LocalTrainer, options: SiteOptions | None) -> Trainer:
    from medfed.privacy.dp.noise import NoiseMode  # imports Opacus: only when DP is on

    site = data.name
    if options is None:
        raise ConfigError(f"site '{site}': the job uses DP-SGD; the site needs a state folder for its ledger")
    return site_trainer(
        site_privacy(options.policy, job.privacy, site).plan(),
        inner,
        data,
        planned_rounds=job.federation.rounds,
        ledger_dir=options.state_dir / "privacy",
        job=_fingerprint(job.model_dump_json()),
        noise=NoiseMode.SECURE,  # the site's own CSPRNG, whatever the job says
    )


def _fingerprint(job_json: str) -> str:
    return hashlib.sha256(job_json.encode()).hexdigest()
