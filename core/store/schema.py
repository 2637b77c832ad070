"""Every table of Alliance on one metadata (for migrations and tests)."""

# Imported for their side effect: each registers its tables on the shared metadata.
import core.accounts.models  # account tables
import core.attendance.models  # who cancelled a session (issue 7, R8)
import core.audit.models  # audit log (notes issue)
import core.checklists.models  # checklist templates, runs, answers
import core.clients.models  # clients, series assignments, sessions
import core.crypto.models  # keyring tables
import core.jobs.models  # job runner tables
import core.links.models  # client links, join clicks, check-ins, contact lines
import core.mail.models  # the mail outbox
import core.notes.models  # session notes
import core.push.models  # push channels
import core.ratings.models  # call ends, alliance ratings, licensed measure text
import core.video.models  # noqa: F401  (video connections, session video links, call events)
from core.store.models import Base

metadata = Base.metadata

__all__ = ["metadata"]
