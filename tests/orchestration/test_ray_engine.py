"""``federation.engine: ray`` (``RayGrid``): the final model and site states of the in-memory
engine for the same seed (FedAvg; SCAFFOLD, whose control variates stay in the actors; secure
aggregation), resume into new actors, drop-outs, and how many actors a cluster holds."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import tiny_simulation

ray = pytest.importorskip("ray")

from medfed.config.loading import parse_config  # noqa: E402
from medfed.data import SiteData  # noqa: E402
from medfed.errors import ConfigError, DataError, PrivacyBudgetExceeded  # noqa: E402
from medfed.orchestration.experiments import plan_experiments  # noqa: E402
from medfed.orchestration.federation_data import prepare_data  # noqa: E402
from medfed.orchestration.grid import Absence, InMemoryGrid  # noqa: E402
from medfed.orchestration.ray_grid import RayGrid, RayPlacement, actor_count  # noqa: E402
from medfed.orchestration.simulation import ExperimentResult, ExperimentRunner, SiteRecipe  # noqa: E402
from medfed.types import SiteState, TrainResult, TrainTask, Weights  # noqa: E402

pytestmark = pytest.mark.integration

TINY = tiny_simulation(
    data={"unseen_site": None},
    training={"optimizer": "sgd", "lr": 0.01},
    federation={"rounds": 2, "min_sites": 2, "evaluate_every": 0},
    ray={"num_cpus_per_site": 1},
)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module, and the driver with the torch threads of a one-CPU actor
    (the same summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the recipes below
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


def _config(tmp_path: Path, engine: str, strategy: str, rounds: int = 2, **privacy: Any) -> Any:
    federation = {**TINY["federation"], "engine": engine, "rounds": rounds}
    return parse_config(
        {
            **TINY,
            "strategies": [{"name": strategy}],
            "federation": federation,
            "privacy": privacy,
            "output_dir": str(tmp_path),
        }
    )


def _run(tmp_path: Path, engine: str, strategy: str, rounds: int = 2, **privacy: Any) -> ExperimentResult:
    config = _config(tmp_path, engine, strategy, rounds, **privacy)
    data = prepare_data(config.data, tmp_path / "data", seed=config.seed)
    (experiment,) = plan_experiments(config, data)
    return ExperimentRunner(config, data, tmp_path).run(experiment)


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExperimentResult]:
    return {
        strategy: _run(tmp_path_factory.mktemp(f"memory-{strategy}"), "in_memory", strategy)
        for strategy in ("fedavg", "scaffold")
    }


def _assert_equal(ray_weights: Mapping[str, torch.Tensor], memory_weights: Weights) -> None:
    assert ray_weights.keys() == memory_weights.keys()
    assert [
        name for name, tensor in memory_weights.items() if not torch.equal(ray_weights[name], tensor)
    ] == []


def _assert_same_sites(on_ray: Mapping[str, SiteState], memory: Mapping[str, SiteState]) -> None:
    assert on_ray.keys() == memory.keys()
    for site, state in memory.items():
        assert on_ray[site].extra.keys() == state.extra.keys()
        for group, tensors in state.extra.items():
            _assert_equal(on_ray[site].extra[group], dict(tensors))


@pytest.mark.parametrize("strategy", ["fedavg", "scaffold"])
def test_ray_ends_with_the_in_memory_model_and_site_states(
    tmp_path: Path, strategy: str, in_memory: dict[str, ExperimentResult]
) -> None:
    memory = in_memory[strategy]
    on_ray = _run(tmp_path, "ray", strategy)
    assert on_ray.state.round == memory.state.round == 2
    _assert_equal(on_ray.state.weights, memory.state.weights)
    assert len(memory.sites) >= 3  # more sites than the 2 actors: an actor hosts several
    _assert_same_sites(on_ray.sites, memory.sites)
    if strategy == "scaffold":
        assert all(state.extra for state in memory.sites.values())  # control variates compared


def test_a_run_resumed_on_ray_restores_each_sites_state_in_its_actor(
    tmp_path: Path, in_memory: dict[str, ExperimentResult]
) -> None:
    first = _run(tmp_path, "in_memory", "scaffold", rounds=1)  # leaves the checkpoint of round 1
    assert first.state.round == 1 and all(state.extra for state in first.sites.values())
    resumed = _run(tmp_path, "ray", "scaffold")  # round 2 from the control variates of round 1
    assert resumed.state.round == 2
    _assert_equal(resumed.state.weights, in_memory["scaffold"].state.weights)
    _assert_same_sites(resumed.sites, in_memory["scaffold"].sites)


def test_a_secure_aggregation_round_over_ray_gives_the_in_memory_model(tmp_path: Path) -> None:
    secure = {"secure_aggregation": {"threshold_fraction": 0.6}}
    memory = _run(tmp_path / "memory", "in_memory", "fedavg", rounds=1, **secure)
    on_ray = _run(tmp_path / "ray", "ray", "fedavg", rounds=1, **secure)
    assert on_ray.state.round == 1
    _assert_equal(on_ray.state.weights, memory.state.weights)


FAILURES: dict[str, Exception] = {
    "declines": PrivacyBudgetExceeded("site-a", spent=7.9, would_spend=8.2, budget=8.0),
    "bug": RuntimeError("a bug in the site's code"),
    "data": DataError("site-a", "/data/a/case-1.nii.gz", "truncated file"),
}


@dataclass(frozen=True)
class FailingSites:
    """The sites of ``inner``; ``failing`` raises ``FAILURES[task.config["fail"]]`` when a task
    asks it to."""

    inner: SiteRecipe
    failing: str

    def grid(self, sites: Mapping[str, SiteData], states: Mapping[str, SiteState]) -> InMemoryGrid:
        grid = self.inner.grid(sites, states)
        site = grid.sites.get(self.failing)
        if site is not None:
            train = site.train

            def fail_or_train(task: TrainTask) -> TrainResult:
                if task.config.get("fail") in FAILURES:
                    raise FAILURES[str(task.config["fail"])]
                return train(task)

            site.train = fail_or_train  # type: ignore[method-assign]
        return grid


def test_a_site_fails_inside_its_actor_as_in_memory(tmp_path: Path) -> None:
    config = _config(tmp_path, "ray", "fedavg")
    data = prepare_data(config.data, tmp_path / "data", seed=config.seed)
    (experiment,) = plan_experiments(config, data)
    runner = ExperimentRunner(config, data, tmp_path)
    names = sorted(experiment.sites)
    recipe = FailingSites(SiteRecipe(config, runner.model_params, experiment.strategy), names[0])
    grid = RayGrid(recipe, experiment.sites, {}, placement=RayPlacement())
    weights = dict(runner.new_model().state_dict())

    def train(fail: str) -> list[str]:
        task = TrainTask(round=1, weights=weights, config={"fail": fail})
        return [result.site for result in grid.train(dict.fromkeys(names, task))]

    try:
        grid.absences.start(1)  # as the round loop does
        assert train("declines") == names[1:]  # out of budget: a drop-out
        assert grid.absences(1) == {names[0]: Absence.DECLINED}
        with pytest.raises(RuntimeError, match="a bug in the site's code"):  # with the actor's traceback
            train("bug")
        with pytest.raises(DataError) as raised:  # the one line the CLI prints
            train("data")
        assert type(raised.value) is DataError and str(raised.value) == str(FAILURES["data"])
        lost = [name for name in names if grid.host_of[name] == grid.host_of[names[1]]]
        ray.kill(grid.hosts[grid.host_of[names[1]]])  # the actor (its node) is lost: a drop-out
        grid.absences.start(1)
        assert train("none") == [name for name in names if name not in lost]
        assert grid.absences(1) == dict.fromkeys(lost, Absence.NO_ANSWER)
    finally:
        grid.close()


@pytest.mark.parametrize(
    ("resources", "placement", "sites", "expected"),
    [
        ({"CPU": 2.0}, {}, 500, 2),
        ({"CPU": 2.0}, {"cpus_per_site": 0.25}, 500, 8),
        ({"CPU": 64.0}, {}, 3, 3),
        ({"CPU": 64.0, "GPU": 4.0}, {"gpus_per_site": 0.5}, 500, 8),
        ({"CPU": 64.0}, {"max_actors": 5}, 500, 5),
    ],
)
def test_actor_count_fits_the_cluster(
    resources: dict[str, float], placement: dict[str, Any], sites: int, expected: int
) -> None:
    assert actor_count(RayPlacement(**placement), resources, sites) == expected


def test_a_cluster_without_room_for_one_site_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="num_gpus_per_site"):
        actor_count(RayPlacement(gpus_per_site=1), {"CPU": 8.0}, 10)


def test_ray_refuses_dp_sgd_and_a_deployed_job_refuses_ray() -> None:
    from medfed.deployment.job import JobConfig

    with pytest.raises(ConfigError, match="does not run privacy.dp_sgd"):
        parse_config({**TINY, "federation": {"engine": "ray"}, "privacy": {"dp_sgd": {}}})
    with pytest.raises(ValueError, match="is for 'medfed simulate'"):
        JobConfig.model_validate({"federation": {"engine": "ray"}})


def test_the_ray_engine_without_ray_installed_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "ray", "fedavg")
    data = prepare_data(config.data, tmp_path / "data", seed=config.seed)
    (experiment,) = plan_experiments(config, data)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.delitem(sys.modules, "medfed.orchestration.ray_grid")
    with pytest.raises(ConfigError, match=r"needs Ray: pip install 'medfed\[ray\]'"):
        ExperimentRunner(config, data, tmp_path).run(experiment)
