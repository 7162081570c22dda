"""A named registry: raises on a duplicate, and an unknown name lists the known ones."""

from __future__ import annotations

from typing import Generic, TypeVar

from compofa.errors import CompofaError, RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one kind (families, design spaces, device backends) by name, in registration order."""

    def __init__(self, kind: str, unknown_error: type[CompofaError] = RegistryError, hint: str = "") -> None:
        self.kind = kind
        self.unknown_error = unknown_error
        self.hint = hint
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = f" ({self.hint})" if self.hint else ""
            raise self.unknown_error(f"unknown {self.kind} {name!r}; known: {', '.join(self._items)}{hint}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def values(self) -> tuple[T, ...]:
        return tuple(self._items.values())
