"""Reading a YAML file into a validated ``SimulationConfig``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medfed.config.schema import PrivacyConfig, SimulationConfig, StrategyConfig
from medfed.errors import ConfigError, MedfedError
from medfed.models import MODELS
from medfed.privacy.plan import refuse_robust_with
from medfed.strategies.base import Strategy
from medfed.strategies.registry import STRATEGIES
from medfed.strategies.robust import robust_strategy


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> SimulationConfig:
    """The configuration in ``path`` (the built-in demo when ``None``) with ``overrides``
    applied (see ``apply_override``), fully validated.

    Raises:
        ConfigError: The file is unreadable, not YAML, an override is malformed, or a field is
            invalid (named).
    """
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config '{path}': {error}") from error
        if not isinstance(raw, dict):
            raise ConfigError(f"config '{path}' must be a mapping of settings at the top level")
    for override in overrides:
        apply_override(raw, override)
    return parse_config(raw, source=str(path or "<defaults>"))


def apply_override(raw: dict[str, Any], override: str, defaults: Mapping[str, Any] | None = None) -> None:
    """Sets ``KEY=VALUE`` in ``raw``, before validation: ``KEY`` is a dotted path (a number
    indexes a list, e.g. ``strategies.0.mu``), ``VALUE`` is parsed as YAML (``3``, ``true``,
    ``null``, ``[16, 32]``). Missing mappings on the path are created; a missing list
    starts as its entry in ``defaults`` (a simulation's when ``None``; so ``strategies.1.mu``
    edits the default FedProx).

    Raises:
        ConfigError: ``override`` has no ``=``, an empty key, an unparsable value, or a path
            through something that is not a mapping or list.
    """
    key, separator, text = override.partition("=")
    parts = key.strip().split(".")
    if not separator or not all(parts):
        raise ConfigError(
            f"--set '{override}': expected KEY=VALUE with a dotted KEY, e.g. federation.rounds=3"
        )
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set '{override}': the value is not YAML: {error}") from None
    node: Any = raw
    default: Any = SimulationConfig().model_dump(mode="json") if defaults is None else defaults
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set '{override}': {where}: no such entry (the list has {len(node)})")
            index: int | str = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and part not in node:
                node[part] = default[part] if isinstance(default.get(part), list) else {}
        else:
            raise ConfigError(f"--set '{override}': {where}: cannot go into a {type(node).__name__}")
        if last:
            node[index] = value
            return
        node = node[index]
        default = _child(default, index)


def _child(default: Any, index: int | str) -> Any:
    """The default at ``index`` under ``default``, or an empty mapping when there is none."""
    if isinstance(default, dict):
        return default.get(index, {}) or {}
    if isinstance(default, list) and isinstance(index, int) and index < len(default):
        return default[index]
    return {}


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


def build_strategy(strategy: StrategyConfig) -> Strategy:
    """The strategy ``strategy`` names, built with its arguments and wrapped in its robust rule
    when it has one.

    Raises:
        MedfedError, TypeError, ValueError: If a name is unknown or an argument does not fit.
    """
    built = STRATEGIES.create(strategy.name, **strategy.params)
    if strategy.robust is None:
        return built
    return robust_strategy(built, strategy.robust.rule, **strategy.robust.params)


def check_strategy(strategy: StrategyConfig, privacy: PrivacyConfig, where: str) -> None:
    """Raises ``ConfigError`` (prefixed with ``where``) unless ``strategy`` builds with its
    arguments and can be protected as ``privacy`` asks."""
    try:
        built = build_strategy(strategy)
    except (MedfedError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    if strategy.robust is not None:
        try:
            refuse_robust_with(privacy.plan(), strategy.robust.rule)
        except ConfigError as error:
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
