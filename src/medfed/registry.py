"""A tiny name -> factory registry whose unknown-name errors list the valid names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from medfed.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories of ``T``.

    Args:
        kind: What the registry holds, used in error messages (e.g. ``"strategy"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._factories[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; raises ``UnknownNameError`` otherwise."""
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._factories)) from None

    def create(self, name: str, **kwargs: object) -> T:
        """Calls the factory registered under ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)
