"""Every table of Alliance on one metadata (for migrations and tests)."""

# Imported for their side effect: each registers its tables on the shared metadata.
import core.accounts.models  # account tables
import core.checklists.models  # checklist templates, runs, answers
import core.clients.models  # clients, series assignments, sessions
import core.crypto.models  # keyring tables
import core.jobs.models  # job runner tables
import core.mail.models  # noqa: F401  (the mail outbox)
from core.store.models import Base

metadata = Base.metadata

__all__ = ["metadata"]
