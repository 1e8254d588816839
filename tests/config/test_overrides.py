"""``--set KEY=VALUE``: dotted paths into the YAML before validation."""

from pathlib import Path

import pytest

from medfed.config.loading import apply_override, load_config
from medfed.errors import ConfigError


def test_overrides_reach_nested_settings_and_parse_yaml_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("federation: {rounds: 5, fraction: 0.5}\n")
    config = load_config(
        path, ["federation.rounds=3", "model.params.channels=[4, 8]", "data.unseen_site=null"]
    )
    assert (config.federation.rounds, config.federation.fraction) == (3, 0.5)
    assert config.model.params["channels"] == [4, 8]
    assert config.data.unseen_site is None


def test_a_list_index_edits_the_default_list() -> None:
    config = load_config(None, ["strategies.1.mu=0.5"])
    assert [(s.name, s.params) for s in config.strategies] == [("fedavg", {}), ("fedprox", {"mu": 0.5})]


def test_an_unknown_key_is_named_by_validation() -> None:
    with pytest.raises(ConfigError, match="federation.roundz: Extra inputs are not permitted"):
        load_config(None, ["federation.roundz=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rounds", "expected KEY=VALUE"),
        ("federation..rounds=1", "expected KEY=VALUE"),
        ("strategies.7.mu=1", r"strategies.7: no such entry \(the list has 2\)"),
        ("seed.x=1", "seed.x: cannot go into a int"),
        ("seed=[1", "the value is not YAML"),
    ],
)
def test_malformed_overrides_are_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_override({"seed": 1}, override)
