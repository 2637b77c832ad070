"""Provider discovery through the ``alliance.integrations`` entry-point group.

A provider lookup is a name -> class map, checked when each provider is registered.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

from integrations.base.protocol import CalendarProvider, Capability

ENTRY_POINT_GROUP = "alliance.integrations"

_REQUIRED_METHODS = ("normalize_settings", "from_settings", "list_changes")


class ProviderError(Exception):
    """A provider plugin that is missing, malformed or registered twice."""


def check_provider(candidate: object, origin: str) -> type[CalendarProvider]:
    """Return ``candidate`` if it implements the provider contract, else explain what is wrong."""
    if not inspect.isclass(candidate):
        raise ProviderError(f"{origin}: expected a provider class, got {type(candidate).__name__}")
    missing = [m for m in _REQUIRED_METHODS if not callable(getattr(candidate, m, None))]
    if missing:
        raise ProviderError(f"{origin}: provider {candidate.__name__} lacks {', '.join(missing)}")
    name = getattr(candidate, "name", None)
    if not isinstance(name, str) or not name:
        raise ProviderError(f"{origin}: provider {candidate.__name__} has no string 'name'")
    caps = getattr(candidate, "capabilities", None)
    if not isinstance(caps, frozenset) or not all(isinstance(c, Capability) for c in caps):
        raise ProviderError(f"{origin}: provider {name!r} must declare 'capabilities' as a frozenset of Capability")
    params = list(inspect.signature(candidate.list_changes).parameters)  # type: ignore[attr-defined]
    if params[:2] != ["self", "cursor"]:
        raise ProviderError(
            f"{origin}: provider {name!r} list_changes must take (self, cursor), got ({', '.join(params)})"
        )
    return candidate  # type: ignore[return-value]


class ProviderRegistry:
    """Name -> provider class."""

    def __init__(self) -> None:
        self._providers: dict[str, type[CalendarProvider]] = {}

    def register(self, candidate: object, origin: str = "registered by code") -> None:
        provider = check_provider(candidate, origin)
        if provider.name in self._providers:
            raise ProviderError(
                f"{origin}: a provider named {provider.name!r} is already registered "
                f"({self._providers[provider.name].__module__})"
            )
        self._providers[provider.name] = provider

    def get(self, name: str) -> type[CalendarProvider]:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(sorted(self._providers)) or "none"
            raise ProviderError(f"unknown provider {name!r} (installed: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._providers)

    @classmethod
    def from_entry_points(cls) -> ProviderRegistry:
        registry = cls()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
            except Exception as exc:
                raise ProviderError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            if getattr(loaded, "name", None) != ep.name:
                raise ProviderError(
                    f"entry point {ep.name!r} ({ep.value}) names a provider called {getattr(loaded, 'name', None)!r}"
                )
            registry.register(loaded, origin=f"entry point {ep.name!r} ({ep.value})")
        return registry
