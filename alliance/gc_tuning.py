"""Python's cyclic garbage collector, set up for Alliance's long-running processes.

A first mirror of 10,000 events allocates hundreds of thousands of objects that live for one page
(rows, instants, texts) and create no reference cycles. With the interpreter's default thresholds
(700, 10, 10) the collector runs about 200 young collections per 10,000 occurrences and every few
pages a full one, which walks every object alive in the process: the ~100,000 that start-up
imported (modules, classes, SQLAlchemy's metadata, pydantic's models) each time. That was 10-20%
of a first mirror's CPU (benchmarks/README.md, Google section).

So, once start-up is done: collect, then :func:`gc.freeze` what is left (the collector never
walks it again; it is never garbage anyway), and let young objects pile up to ``GEN0_THRESHOLD``
before a collection. Cycles are still collected, later: what a larger threshold costs is at most
``GEN0_THRESHOLD`` more container objects alive between collections (a few megabytes).

Called at process start by ``alliance sync``, ``alliance worker`` and ``alliance serve``; not by
``core`` (a library does not set process-wide policy) and not by short commands, which end
before a collection matters.
"""

from __future__ import annotations

import gc

# Young objects allocated (minus freed) before a collection; the interpreter's default is 700.
GEN0_THRESHOLD = 50_000
# Young collections before a middle one, and middle ones before a full one (defaults: 10, 10). A
# young collection now sees 70x more objects, so fewer of the older ones are needed.
GEN1_THRESHOLD = 10
GEN2_THRESHOLD = 10


def tune_for_long_running_process() -> None:
    """Freeze what start-up allocated and collect young objects less often (call once, after imports)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
