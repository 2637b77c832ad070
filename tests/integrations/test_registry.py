"""Provider discovery: entry points, the protocol check, duplicate names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from core.sync import ChangePage
from integrations.base import Capability, MemoryProvider, ProviderError, ProviderRegistry
from integrations.ics.provider import IcsProvider


def test_installed_providers_are_found_through_entry_points() -> None:
    registry = ProviderRegistry.from_entry_points()
    assert "ics" in registry.names()
    assert registry.get("ics") is IcsProvider


def test_a_duplicate_name_is_an_error() -> None:
    registry = ProviderRegistry()
    registry.register(MemoryProvider)

    class Impostor(MemoryProvider):
        pass

    with pytest.raises(ProviderError, match="'memory' is already registered"):
        registry.register(Impostor, origin="plugin x")


def test_an_unknown_provider_names_the_installed_ones() -> None:
    registry = ProviderRegistry()
    registry.register(MemoryProvider)
    with pytest.raises(ProviderError, match=r"unknown provider 'caldav' \(installed: memory\)"):
        registry.get("caldav")


class _Good:
    name: ClassVar[str] = "good"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ_ONLY})

    @classmethod
    def normalize_settings(cls, raw: Any) -> dict[str, Any]:
        return {}

    @classmethod
    def from_settings(cls, settings: Any, context: Any) -> _Good:
        return cls()

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        yield ChangePage()


def _variant(**overrides: Any) -> type:
    return type("Variant", (_Good,), overrides)


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (_Good(), "expected a provider class"),
        (_variant(list_changes=None), "lacks list_changes"),
        (_variant(name=""), "has no string 'name'"),
        (_variant(capabilities={"push"}), "frozenset of Capability"),
        (_variant(capabilities=frozenset({"push"})), "frozenset of Capability"),
        (_variant(list_changes=lambda self: iter(())), r"must take \(self, cursor\)"),
    ],
)
def test_a_malformed_provider_is_refused_with_the_reason(candidate: object, message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        ProviderRegistry().register(candidate, origin="test plugin")


def test_a_well_formed_provider_registers() -> None:
    registry = ProviderRegistry()
    registry.register(_Good)
    assert registry.get("good") is _Good
