"""Reading a YAML file into a validated ``SimulationConfig``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medfed.config.schema import PrivacyConfig, SimulationConfig, StrategyConfig
from medfed.errors import ConfigError, MedfedError
from medfed.models import MODELS
from medfed.strategies.base import Strategy
from medfed.strategies.registry import STRATEGIES


def load_config(path: Path | None) -> SimulationConfig:
    """The configuration in ``path`` (the built-in demo when ``None``), fully validated.

    Raises:
        ConfigError: The file is unreadable, not YAML, or has an invalid field (named).
    """
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config '{path}': {error}") from error
        if not isinstance(raw, dict):
            raise ConfigError(f"config '{path}' must be a mapping of settings at the top level")
    return parse_config(raw, source=str(path or "<defaults>"))


def parse_config(raw: dict[str, Any], *, source: str = "<config>") -> SimulationConfig:
    """Validates a mapping of settings; also builds each strategy once to check its arguments."""
    try:
        config = SimulationConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid config {source}:\n{describe_errors(error)}") from None
    for index, strategy in enumerate(config.strategies):
        check_strategy(strategy, config.privacy, f"invalid config {source}: strategies.{index}")
    try:
        MODELS.get(config.model.name)
    except MedfedError as error:
        raise ConfigError(f"invalid config {source}: model.name: {error}") from None
    return config


def check_strategy(strategy: StrategyConfig, privacy: PrivacyConfig, where: str) -> None:
    """Raises ``ConfigError`` (prefixed with ``where``) unless ``strategy`` builds with its
    arguments and can be protected as ``privacy`` asks."""
    try:
        built = STRATEGIES.create(strategy.name, **strategy.params)
    except (MedfedError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    if privacy.secure_aggregation is not None:
        _check_secure_aggregation(built, where)
    if privacy.encryption is not None:
        _check_encryption(built, where)


def _check_secure_aggregation(strategy: Strategy, where: str) -> None:
    """Raises ``ConfigError`` unless ``SecureAggregation`` accepts ``strategy``."""
    from medfed.privacy.secagg import SecureAggregation  # imports cryptography: only when used

    try:
        SecureAggregation(strategy)
    except ValueError as error:
        raise ConfigError(f"{where}: privacy.secure_aggregation: {error}") from None


def _check_encryption(strategy: Strategy, where: str) -> None:
    """Raises ``ConfigError`` unless ``EncryptedAggregation`` accepts ``strategy``."""
    from medfed.privacy.ckks_rounds import EncryptedAggregation  # TenSEAL: only when used

    try:
        EncryptedAggregation(strategy)
    except ValueError as error:
        raise ConfigError(f"{where}: privacy.encryption: {error}") from None


def describe_errors(error: ValidationError) -> str:
    """One indented line per invalid field of ``error``: its dotted path and the problem."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "<top level>"
        lines.append(f"  {field}: {problem['msg']}")
    return "\n".join(lines)
