"""Every table of Alliance on one metadata (for migrations and tests)."""

import core.clients.models
import core.crypto.models  # noqa: F401  (registers the keyring tables)
from core.store.models import Base

metadata = Base.metadata

__all__ = ["metadata"]
