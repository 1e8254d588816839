from pathlib import Path

import pytest

from medfed.config.loading import load_config, parse_config
from medfed.errors import ConfigError


def test_defaults_are_the_demo() -> None:
    config = load_config(None)
    assert config.data.synthetic is not None and config.data.unseen_site == "hospital_d"
    assert [s.name for s in config.strategies][0] == "fedavg"


def test_yaml_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("federation: {rounds: 3}\nstrategies: [{name: fedprox, mu: 0.1}]\n")
    config = load_config(path)
    assert config.federation.rounds == 3
    assert config.strategies[0].params == {"mu": 0.1}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"federation": {"rounds": 0}}, "federation.rounds"),
        ({"federaton": {}}, "federaton"),
        ({"training": {"lr": -1}}, "training.lr"),
        ({"training": {"optimizer": "lbfgs"}}, "training.optimizer"),
        ({"data": {"test_fraction": 1.5}}, "data.test_fraction"),
        ({"task": "detection"}, "task"),
        ({"strategies": [{"name": "fedprox", "mu": -1}]}, "strategies.0"),
        ({"strategies": [{"name": "fedavgg"}]}, "strategies.0"),
        ({"strategies": [{"name": "fedavg"}, {"name": "fedavg"}]}, "label"),
        ({"model": {"name": "vit"}}, "model.name"),
        ({"data": {"sites": [{"name": "a/b", "path": "/x"}], "synthetic": None}}, "data.sites.0.name"),
        ({"data": {"sites": [{"name": "a", "path": "/x"}]}}, "either 'synthetic' or 'sites'"),
        (
            {"privacy": {"secure_aggregation": {"threshold_fraction": 0.4}}},
            "privacy.secure_aggregation.threshold_fraction",
        ),
        (
            {"privacy": {"secure_aggregation": {"threshold_fraction": 1.0}}},
            "privacy.secure_aggregation.threshold_fraction",
        ),
        ({"privacy": {"secure_aggregation": {"treshold": 0.6}}}, "privacy.secure_aggregation.treshold"),
        (
            {"privacy": {"secure_aggregation": {}}, "strategies": [{"name": "scaffold"}]},
            "strategies.0: privacy.secure_aggregation",
        ),
        (
            {"privacy": {"secure_aggregation": {}, "client_dp": {"noise_multiplier": 1.0}}},
            "secure_aggregation cannot be combined with client_dp",
        ),
        ({"privacy": {"encryption": {"scheme": "bfv"}}}, "privacy.encryption.scheme"),
        (
            {"data": {"unseen_site": None, "unseen_site_adabn": True}},
            "unseen_site_adabn needs an unseen_site",
        ),
        ({"privacy": {"encryption": {"scheme": "ckks", "bits": 40}}}, "privacy.encryption.bits"),
        (
            {"privacy": {"encryption": {"scheme": "ckks"}}, "strategies": [{"name": "scaffold"}]},
            "strategies.0: privacy.encryption",
        ),
        (
            {"privacy": {"encryption": {"scheme": "ckks"}, "secure_aggregation": {}}},
            "encryption cannot be combined with secure_aggregation",
        ),
        (
            {"privacy": {"encryption": {"scheme": "ckks"}, "client_dp": {"noise_multiplier": 1.0}}},
            "encryption cannot be combined with client_dp",
        ),
    ],
)
def test_bad_values_are_rejected_with_the_field_named(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert field in str(caught.value)


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="fedavg.*fedprox|valid names"):
        parse_config({"strategies": [{"name": "nope"}]})


def test_unreadable_or_non_mapping_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    path.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="c.yaml"):
        load_config(path)


def test_secure_aggregation_is_off_unless_given() -> None:
    assert parse_config({}).privacy.secure_aggregation is None
    strategies = [{"name": "fedprox", "mu": 0.1}]
    config = parse_config({"privacy": {"secure_aggregation": {}}, "strategies": strategies})
    assert config.privacy.secure_aggregation is not None
    assert config.privacy.secure_aggregation.threshold_fraction == 0.67


def test_encryption_is_off_unless_given() -> None:
    assert parse_config({}).privacy.encryption is None
    config = parse_config({"privacy": {"encryption": {"scheme": "ckks"}}})
    assert config.privacy.encryption is not None and config.privacy.encryption.scheme == "ckks"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"seed": 1, "seeds": [1, 2]}, "give 'seed' (one run) or 'seeds' (one run per seed), not both"),
        ({"seeds": []}, "seeds: List should have at least 1 item"),
        ({"seeds": [0, 1, 0]}, "seeds must be distinct, got [0, 1, 0]"),
        ({"seeds": [-1, 2]}, "seeds.0: Input should be greater than or equal to 0"),
        ({"seeds": [0, 2**32]}, "seeds.1: Input should be less than or equal to"),
        ({"seeds": [0, True]}, "seeds.1: Input should be a valid integer"),
        ({"seeds": [0, "1"]}, "seeds.1: Input should be a valid integer"),
        ({"seeds": 3}, "seeds: Input should be a valid list"),
        ({"seeds": list(range(101))}, "seeds: List should have at most 100 items"),
    ],
)
def test_bad_seeds_are_rejected_with_the_field_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)


def test_seeds_run_once_each_seed_holds_the_lowest_and_the_dump_validates_again() -> None:
    from medfed.orchestration.run_dir import config_yaml

    several = parse_config({"seeds": [2, 0, 1]})
    assert several.run_seeds() == [2, 0, 1] and several.seed == 0
    dumped = several.model_dump(mode="json")
    assert "seed" not in dumped and parse_config(dumped) == several
    one = parse_config({"seed": 4})
    assert one.run_seeds() == [4] and one.seeds is None
    assert "seeds" not in config_yaml(one) and "seed: 4" in config_yaml(one)  # as before seeds existed
    assert parse_config({"seeds": None, "seed": 4}) == one
