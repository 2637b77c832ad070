"""ICS sync benchmark: Alliance's sync against the bare parsing libraries, side by side.

Builds a deterministic Google-export-shaped calendar of about 10,000 occurrences in the sync
window (40 weekly series meeting 3-4 times a week plus 2,000 single events) and measures, in one
run, each in its own fresh subprocess:

    (a)  floor      read the bytes, ``icalendar.Calendar.from_ical``, expand the window with
                    ``recurring_ical_events.of(cal).between(start, end)``, materialise the list
    (b)  full       ``sync_connection`` of the ICS provider into an empty mirror
    (c)  resync     re-sync of a feed whose bytes differ but whose content does not: new
                    DTSTAMPs (what Google's export does on every fetch) and the VEVENTs in
                    another order, so the provider has to parse and compare everything; the
                    harness checks that it did (``unchanged`` = every occurrence) and wrote no row
    (c') restamp    re-sync after a rewrite with new DTSTAMPs only (informational: the provider
                    may recognise it without parsing)
    (c'') identical re-sync of the byte-identical file (informational)
    (d)  moved      re-sync after 1% of the occurrences moved (20 single events, 80 series
                    instances overridden with RECURRENCE-ID)

Times and peak RSS are reported as ratios to the floor. Run ``python -m benchmarks.ics_sync
--help``; see ``benchmarks/README.md`` for what the figures mean and the last measured table.

The orchestrating process imports nothing heavy on purpose: on Linux a child's ``ru_maxrss``
starts at its parent's peak (it survives ``execve``), so a fat parent would inflate every figure.
Each child also reports ``VmHWM`` so the two can be cross-checked.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_MARK = "@@BENCH-RESULT@@ "

# The fixed "now" shared by the floor and the provider context; window as Alliance's defaults.
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
WINDOW_PAST = timedelta(days=60)
WINDOW_FUTURE = timedelta(days=365)
TZID = "Europe/Madrid"
MADRID = ZoneInfo(TZID)
DEFAULT_SEED = 20260115
DEFAULT_PROVIDER = "integrations.ics.provider:IcsProvider"

SERIES = 40
SERIES_WITH_FOUR_DAYS = 12  # the other 28 meet three times a week
SINGLES = 2_000
ALL_DAY_SINGLES = 40  # part of the 2,000
MOVED_SINGLES = 20
MOVED_INSTANCES_PER_SERIES = 2  # 80 series instances

# Google's export stamps every VEVENT with the export time; each fetch gives new DTSTAMPs.
STAMPS = {
    "base": datetime(2026, 1, 15, 11, 58, 3, tzinfo=UTC),
    "restamp": datetime(2026, 1, 15, 11, 59, 41, tzinfo=UTC),
    "reorder": datetime(2026, 1, 15, 12, 0, 2, tzinfo=UTC),
    "moved": datetime(2026, 1, 15, 12, 0, 17, tzinfo=UTC),
}

TARGETS = {"full": 1.5, "resync": 1.1, "moved": 1.2}
RSS_LIMIT_MB = 200.0

SCENARIOS = {
    "floor": "(a) floor: icalendar + recurring_ical_events",
    "full": "(b) full mirror (empty store)",
    "resync": "(c) re-sync, no change (new DTSTAMPs + reordered)",
    "restamp": "(c') re-sync, new DTSTAMPs only",
    "identical": "(c'') re-sync, byte-identical file",
    "moved": "(d) re-sync, 1% moved",
}
# (scenario, file placed at the source before it; None keeps the bytes). The order matters:
# "restamp" differs from "base" in DTSTAMPs only, and "identical" re-reads what "resync" read.
SEQUENCE = (("full", "base"), ("restamp", "restamp"), ("resync", "reorder"), ("identical", None), ("moved", "moved"))


def window(now: datetime = NOW) -> tuple[datetime, datetime]:
    return now - WINDOW_PAST, now + WINDOW_FUTURE


# --------------------------------------------------------------------------------------------
# The calendar (pure standard library, deterministic for a seed)
# --------------------------------------------------------------------------------------------

THERAPIST = "terapeuta@consulta.example"
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
KINDS = (  # (summary, minutes)
    ("Sesión individual", 50),
    ("Sesión individual", 50),
    ("Sesión online", 50),
    ("Terapia de pareja", 80),
    ("Primera visita", 60),
    ("Supervisión clínica", 60),
    ("Grupo de duelo", 90),
    ("Revisión de caso", 30),
)
LOCATIONS = (
    "Consulta 1, Calle de Alcalá 123, 28009 Madrid",
    "Consulta 2, Calle de Alcalá 123, 28009 Madrid",
    "Centro Alliance, Carrer de Mallorca 250, 08008 Barcelona",
    "",
    "",
)
NOTES = (
    "",
    "",
    "Traer el cuestionario ORS/SRS.",
    "Recordatorio: factura mensual.\nConfirmar la próxima cita.",
    "Sesión de seguimiento; revisar tareas acordadas.",
)
MEET_FENCE = "-::~:~::~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~::~:~::-"
ALL_DAY_SUMMARIES = ("Formación", "Vacaciones", "Congreso de psicoterapia", "Día de gestión")


@dataclass(frozen=True)
class Content:
    summary: str
    description: str
    location: str
    attendees: tuple[str, ...]
    conference: str
    created: datetime
    last_modified: datetime


@dataclass
class Series:
    uid: str
    content: Content
    days: tuple[int, ...]
    start_time: clock
    minutes: int
    dtstart: date
    until: datetime | None
    exdates: list[date] = field(default_factory=list)
    base_moves: dict[date, timedelta] = field(default_factory=dict)  # in every variant
    bench_moves: dict[date, timedelta] = field(default_factory=dict)  # only in "moved"


@dataclass
class Single:
    uid: str
    content: Content
    start: datetime  # UTC; midnight of the day for all-day events
    minutes: int
    all_day: bool
    bench_move: timedelta | None = None


@dataclass
class Model:
    series: list[Series]
    singles: list[Single]
    order: list[tuple[str, int, date | None]]  # ("series"|"override"|"single", index, instance)


def _uid(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuv0123456789") for _ in range(26)) + "@google.com"


def _content(rng: random.Random, summary: str, *, video: bool = True) -> Content:
    initials = f"{rng.choice('ABCDEFGHIJLMNOPRSTV')}.{rng.choice('ABCDEFGHIJLMNOPRSTV')}."
    title = summary if summary.startswith(("Supervisión", "Grupo", "Revisión")) else f"{summary} — {initials}"
    note = rng.choice(NOTES)
    location = rng.choice(LOCATIONS)
    conference = ""
    roll = rng.random() if video else 1.0
    if roll < 0.35:  # Google Meet: conference data plus Google's description block
        code = "-".join("".join(rng.choice("abcdefghijkmnopqrstuvwxyz") for _ in range(n)) for n in (3, 4, 3))
        conference = f"https://meet.google.com/{code}"
        block = (
            f"{MEET_FENCE}\nÚnete con Google Meet: {conference}\n\n"
            "Más información sobre Meet: https://support.google.com/a/users/answer/9282720\n\n"
            f"Por favor, no edites esta sección.\n{MEET_FENCE}"
        )
        description = f"{note}\n\n{block}" if note else block
    elif roll < 0.6:  # Zoom link pasted into the description (and sometimes the location)
        meeting = rng.randrange(81_000_000_000, 89_999_999_999)
        link = f"https://us06web.zoom.us/j/{meeting}?pwd={rng.getrandbits(64):016x}"
        spaced = f"{str(meeting)[:3]} {str(meeting)[3:7]} {str(meeting)[7:]}"
        passcode = rng.randrange(10**5, 10**6)
        block = f"Entra en la reunión Zoom\n{link}\n\nID de reunión: {spaced}\nCódigo de acceso: {passcode}"
        description = f"{note}\n\n{block}" if note else block
        if rng.random() < 0.3:
            location = link
    else:
        description = note
    attendees: tuple[str, ...] = ()
    if rng.random() < 0.6:
        clients = 2 if summary.startswith("Terapia de pareja") else 1
        attendees = (THERAPIST, *(f"cliente{rng.randrange(1, 400)}@correo.example" for _ in range(clients)))
    created = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 600 * 86400))
    modified = created + timedelta(seconds=rng.randrange(0, 30 * 86400))
    return Content(title, description, location, attendees, conference, created, modified)


def _first_on_or_after(day: date, days: tuple[int, ...]) -> date:
    while day.weekday() not in days:
        day += timedelta(days=1)
    return day


def _local(day: date, at: clock) -> datetime:
    return datetime.combine(day, at, tzinfo=MADRID)


def series_instances(s: Series, *, moved: bool) -> Iterator[tuple[date, datetime, datetime]]:
    """(original day, start UTC, end UTC) of every instance up to the end of the window."""
    last_day = (window()[1] + timedelta(days=2)).date()
    day = s.dtstart
    excluded = set(s.exdates)
    while day <= last_day:
        if day.weekday() in s.days and day not in excluded:
            start = _local(day, s.start_time)
            if s.until is not None and start > s.until:
                return
            shift = s.base_moves.get(day) or (s.bench_moves.get(day) if moved else None) or timedelta(0)
            start = start + shift
            yield day, start.astimezone(UTC), (start + timedelta(minutes=s.minutes)).astimezone(UTC)
        day += timedelta(days=1)


def build_model(seed: int) -> Model:
    rng = random.Random(seed)
    w_start, w_end = window()
    series: list[Series] = []
    for i in range(SERIES):
        summary, minutes = rng.choice(KINDS)
        n_days = 4 if i < SERIES_WITH_FOUR_DAYS else 3
        pool = [0, 1, 2, 3, 4] if i % 7 else [0, 1, 2, 3, 4, 5]
        days = tuple(sorted(rng.sample(pool, n_days)))
        start_time = clock(rng.randrange(8, 20), rng.choice((0, 0, 30)))
        dtstart = _first_on_or_after(w_start.date() - timedelta(days=rng.randrange(14, 500)), days)
        until = datetime(2027, 12, 31, 22, 59, 59, tzinfo=UTC) if i % 9 == 0 else None
        s = Series(_uid(rng), _content(rng, summary), days, start_time, minutes, dtstart, until)
        instances = [day for day, _, _ in series_instances(s, moved=False)]
        in_window = [d for d in instances if w_start.date() < d < w_end.date()]
        if i % 4 == 0:  # holidays cancelled as EXDATEs
            s.exdates = sorted(rng.sample(in_window[10:-10], 2))
        if i % 5 == 0:  # an instance that was already moved before the benchmark starts
            candidates = [d for d in in_window if d < NOW.date() and d not in s.exdates]
            s.base_moves[rng.choice(candidates)] = timedelta(minutes=30)
        future = [
            d
            for d in in_window
            if NOW.date() + timedelta(days=7) <= d <= NOW.date() + timedelta(days=300)
            and d not in s.exdates
            and d not in s.base_moves
        ]
        for day in rng.sample(future, MOVED_INSTANCES_PER_SERIES):
            s.bench_moves[day] = rng.choice((timedelta(hours=1), timedelta(hours=-1), timedelta(days=1)))
        series.append(s)

    singles: list[Single] = []
    span_days = (w_end.date() - w_start.date()).days
    for i in range(SINGLES):
        day = w_start.date() + timedelta(days=rng.randrange(2, span_days - 2))
        if i < ALL_DAY_SINGLES:
            start = datetime.combine(day, clock(0), tzinfo=UTC)
            singles.append(Single(_uid(rng), _content(rng, rng.choice(ALL_DAY_SUMMARIES), video=False), start, 0, True))
            continue
        summary, minutes = rng.choice(KINDS)
        if day.weekday() == 6:
            day += timedelta(days=1)
        local = _local(day, clock(rng.randrange(9, 21), rng.choice((0, 15, 30, 45))))
        singles.append(Single(_uid(rng), _content(rng, summary), local.astimezone(UTC), minutes, False))
    movable = [s for s in singles if not s.all_day and NOW + timedelta(days=1) <= s.start <= NOW + timedelta(days=300)]
    for s in rng.sample(movable, MOVED_SINGLES):
        s.bench_move = rng.choice((timedelta(days=1), timedelta(hours=2), timedelta(days=-2)))

    order: list[tuple[str, int, date | None]] = [("series", i, None) for i in range(len(series))]
    for i, s in enumerate(series):
        order += [("override", i, day) for day in sorted({*s.base_moves, *s.bench_moves})]
    order += [("single", i, None) for i in range(len(singles))]
    rng.shuffle(order)
    return Model(series, singles, order)


def expected_counts(model: Model, *, moved: bool) -> dict[str, int]:
    """Occurrences overlapping the window, computed independently of any iCalendar library."""
    w_start, w_end = window()
    series_n = sum(
        1 for s in model.series for _, start, end in series_instances(s, moved=moved) if start < w_end and end > w_start
    )
    singles_n = 0
    for s in model.singles:
        start = s.start + (s.bench_move if moved and s.bench_move else timedelta(0))
        end = start + (timedelta(days=1) if s.all_day else timedelta(minutes=s.minutes))
        singles_n += start < w_end and end > w_start
    return {"series_instances": series_n, "singles": singles_n, "total": series_n + singles_n}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """RFC 5545 folding at 75 octets without splitting a UTF-8 sequence."""
    if len(line.encode()) <= 75:
        return line + "\r\n"
    parts: list[str] = []
    current: list[str] = []
    size, limit = 0, 75
    for ch in line:
        n = len(ch.encode())
        if size + n > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, 74  # continuation lines start with a space
        current.append(ch)
        size += n
    parts.append("".join(current))
    return "\r\n ".join(parts) + "\r\n"


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _madrid(value: datetime) -> str:
    return f"TZID={TZID}:" + value.astimezone(MADRID).strftime("%Y%m%dT%H%M%S")


VTIMEZONE = [
    "BEGIN:VTIMEZONE",
    f"TZID:{TZID}",
    f"X-LIC-LOCATION:{TZID}",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "TZNAME:CEST",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "TZNAME:CET",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
]


def _vevent(
    uid: str, content: Content, when: list[str], stamp: datetime, *, sequence: int = 0, modified: datetime | None = None
) -> list[str]:
    """One VEVENT laid out in the order Google Calendar's export uses."""
    lines = ["BEGIN:VEVENT", *when[:2], f"DTSTAMP:{_utc(stamp)}"]
    if content.attendees:
        lines.append(f"ORGANIZER;CN={THERAPIST}:mailto:{THERAPIST}")
    lines += when[2:]  # RRULE / EXDATE / RECURRENCE-ID follow DTSTAMP in Google's export
    lines.append(f"UID:{uid}")
    for email in content.attendees:
        lines.append(
            "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT="
            f"{'ACCEPTED' if email == THERAPIST else 'NEEDS-ACTION'};CN={email};X-NUM-GUESTS=0:mailto:{email}"
        )
    if content.conference:
        lines.append(f"X-GOOGLE-CONFERENCE:{content.conference}")
    lines += [
        f"CREATED:{_utc(content.created)}",
        f"DESCRIPTION:{_escape(content.description)}",
        f"LAST-MODIFIED:{_utc(modified or content.last_modified)}",
        f"LOCATION:{_escape(content.location)}",
        f"SEQUENCE:{sequence}",
        "STATUS:CONFIRMED",
        f"SUMMARY:{_escape(content.summary)}",
        "TRANSP:OPAQUE",
        "END:VEVENT",
    ]
    return lines


def render(model: Model, variant: str) -> bytes:
    """The calendar as Google's "export" / secret iCal address would serve it."""
    moved = variant == "moved"
    stamp = STAMPS[variant]
    order = model.order
    if variant == "reorder":  # same content, VEVENTs in another order: the bytes must be parsed
        order = list(order)
        random.Random(len(order)).shuffle(order)
    edit_time = datetime(2026, 1, 15, 11, 45, tzinfo=UTC)
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Consulta",
        f"X-WR-TIMEZONE:{TZID}",
        "X-WR-CALDESC:Agenda de la consulta (datos sintéticos del benchmark)",
        *VTIMEZONE,
    ]
    for kind, index, day in order:
        if kind == "series":
            s = model.series[index]
            first = _local(s.dtstart, s.start_time)
            rule = f"RRULE:FREQ=WEEKLY;WKST=MO;BYDAY={','.join(WEEKDAYS[d] for d in s.days)}"
            if s.until is not None:
                rule += f";UNTIL={_utc(s.until)}"
            when = [f"DTSTART;{_madrid(first)}", f"DTEND;{_madrid(first + timedelta(minutes=s.minutes))}", rule]
            when += [f"EXDATE;{_madrid(_local(d, s.start_time))}" for d in s.exdates]
            lines += _vevent(s.uid, s.content, when, stamp)
        elif kind == "override":
            s = model.series[index]
            assert day is not None
            shift = s.base_moves.get(day) or (s.bench_moves.get(day) if moved else None)
            if shift is None:
                continue
            original = _local(day, s.start_time)
            start = original + shift
            when = [
                f"DTSTART;{_madrid(start)}",
                f"DTEND;{_madrid(start + timedelta(minutes=s.minutes))}",
                f"RECURRENCE-ID;{_madrid(original)}",
            ]
            changed = day in s.bench_moves
            lines += _vevent(s.uid, s.content, when, stamp, sequence=1, modified=edit_time if changed else None)
        else:
            single = model.singles[index]
            if single.all_day:
                first = single.start.date()
                when = [
                    f"DTSTART;VALUE=DATE:{first:%Y%m%d}",
                    f"DTEND;VALUE=DATE:{first + timedelta(days=1):%Y%m%d}",
                ]
                lines += _vevent(single.uid, single.content, when, stamp)
                continue
            shift = single.bench_move if moved else None
            start = single.start + (shift or timedelta(0))
            when = [f"DTSTART:{_utc(start)}", f"DTEND:{_utc(start + timedelta(minutes=single.minutes))}"]
            lines += _vevent(
                single.uid,
                single.content,
                when,
                stamp,
                sequence=1 if shift else 0,
                modified=edit_time if shift else None,
            )
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) for line in lines).encode()


# --------------------------------------------------------------------------------------------
# Children: each measurement runs in a fresh interpreter
# --------------------------------------------------------------------------------------------


def _peak_rss() -> dict[str, float]:
    """Peak RSS of this process in MB: ru_maxrss (KiB on Linux) and /proc's VmHWM as a cross-check."""
    peak = {"ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak["vmhwm_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak


def _load_provider(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _context(provider_timezone: str = TZID) -> Any:
    from integrations.base.protocol import ProviderContext

    return ProviderContext(
        default_timezone=provider_timezone, now=NOW, window_past=WINDOW_PAST, window_future=WINDOW_FUTURE
    )


def child_generate(args: dict[str, Any]) -> dict[str, Any]:
    model = build_model(args["seed"])
    out = Path(args["dir"])
    files = {}
    for variant in STAMPS:
        data = render(model, variant)
        (out / f"{variant}.ics").write_bytes(data)
        files[variant] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    singles_moved = sum(1 for s in model.singles if s.bench_move)
    instances_moved = sum(len(s.bench_moves) for s in model.series)
    return {
        "files": files,
        "expected": expected_counts(model, moved=False),
        "expected_moved": expected_counts(model, moved=True),
        "vevents": len(model.series) + len(model.singles) + sum(len(s.base_moves) for s in model.series),
        "series_per_week": sum(len(s.days) for s in model.series),
        "moved_singles": singles_moved,
        "moved_instances": instances_moved,
        "exdates": sum(len(s.exdates) for s in model.series),
        "base_overrides": sum(len(s.base_moves) for s in model.series),
    }


def child_floor(args: dict[str, Any]) -> dict[str, Any]:
    import icalendar
    import recurring_ical_events

    start, end = window()
    t0, c0 = time.perf_counter(), time.process_time()
    data = Path(args["path"]).read_bytes()
    calendar = icalendar.Calendar.from_ical(data)
    occurrences = list(recurring_ical_events.of(calendar).between(start, end))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "count": len(occurrences), **_peak_rss()}


def _admin_engine(admin_url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(admin_url, isolation_level="AUTOCOMMIT")


# A fixed master key for the scratch databases only (the CLI would create a key file).
BENCH_MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


def _keyring() -> Any:
    from core.crypto import Keyring, MasterKeys

    return Keyring(MasterKeys.from_env_value(BENCH_MASTER_KEY))


def child_prepare(args: dict[str, Any]) -> dict[str, Any]:
    """A fresh, migrated, empty store with one therapist and one ICS connection."""
    from sqlalchemy import text

    from core.mirror import add_connection, ensure_therapist
    from core.store.db import Store

    info: dict[str, Any] = {}
    if args["backend"] == "sqlite":
        db = Path(args["db_path"])
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
    else:
        from sqlalchemy.engine import make_url

        admin = _admin_engine(args["admin_url"])
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{args["db_name"]}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{args["db_name"]}"'))
            info["server_version"] = conn.execute(text("SHOW server_version")).scalar()
        admin.dispose()
        url = make_url(args["admin_url"]).set(database=args["db_name"]).render_as_string(hide_password=False)
    store = Store.open(url, keyring=_keyring())
    provider = _load_provider(args["provider"])
    settings = provider.normalize_settings({"source": args["source"]})
    therapist = ensure_therapist(store, "bench@consulta.example", timezone=TZID)
    connection_id = add_connection(store, therapist, provider.name, "benchmark", settings)
    store.close()
    return {"url": url, "connection_id": connection_id, **info}


def child_sync(args: dict[str, Any]) -> dict[str, Any]:
    """What ``alliance sync`` does for one connection, timed from building the provider on.

    The provider gets the fixed ``NOW`` (the floor expands the same window); the engine stamps
    rows with the real clock, so a rewrite of identical values would still show in the digests.
    """
    from core.mirror import list_connections
    from core.store.db import Store
    from core.sync.engine import sync_connection

    try:  # load what the `alliance` command loads, so peak RSS is that of `alliance sync`
        import alliance.cli  # noqa: F401

        cli_loaded = True
    except Exception:  # the CLI is not needed to measure the sync itself
        cli_loaded = False
    provider_cls = _load_provider(args["provider"])
    # Like the CLI: migrations and the master key are checked on every start.
    store = Store.open(args["url"], keyring=_keyring())
    server = _ServerCpu(store.engine)
    settings = next(c.settings for c in list_connections(store) if c.id == args["connection_id"])
    context = _context()
    server.start()
    t0, c0 = time.perf_counter(), time.process_time()
    provider = provider_cls.from_settings(settings, context)
    report = sync_connection(store, args["connection_id"], provider)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    server_cpu = server.stop()
    store.close()
    return {
        "seconds": seconds,
        "cpu": cpu + (server_cpu or 0.0),
        "client_cpu": cpu,
        "server_cpu": server_cpu,
        "report": report.as_dict(),
        "changes": report.changes,
        "cli_loaded": cli_loaded,
        **_peak_rss(),
    }


class _ServerCpu:
    """CPU seconds spent by this process's PostgreSQL backends (read from /proc when local).

    On a shared machine wall-clock time swings with the neighbours' load; CPU time (the client's
    plus the database server's) is steadier. SQLite runs inside the client, so it has none.
    """

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.enabled = engine.dialect.name == "postgresql"
        self.base: dict[int, float | None] = {}
        if self.enabled:
            event.listen(engine, "checkout", self._checkout)

    def _cpu(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None  # not a local server, or not ours to read
        return (int(fields[11]) + int(fields[12])) / self._TICK  # utime + stime

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pid = getattr(getattr(dbapi_connection, "info", None), "backend_pid", None)
        if isinstance(pid, int) and pid not in self.base:
            self.base[pid] = self._cpu(pid)

    def start(self) -> None:
        self.base = {pid: self._cpu(pid) for pid in self.base}

    def stop(self) -> float | None:
        if not self.enabled:
            return None
        total = 0.0
        for pid, before in self.base.items():
            after = self._cpu(pid)
            if before is None or after is None:
                return None
            total += after - before
        return total


def child_inspect(args: dict[str, Any]) -> dict[str, Any]:
    """Row counts and a per-row digest of the mirror, to tell which rows a sync wrote."""
    from sqlalchemy import func, select

    from core.store.db import Store
    from core.store.models import Connection, Occurrence, OccurrenceHistory, OutboxEvent

    store = Store.open(args["url"], migrate=False, keyring=_keyring())
    with store.session() as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Occurrence, OccurrenceHistory, OutboxEvent)
        }
        digests = {
            str(row[0]): hashlib.sha1(repr(tuple(row)).encode()).hexdigest()[:16]
            for row in session.execute(select(Occurrence.__table__).order_by(Occurrence.id))
        }
        status = dict(
            session.execute(select(Occurrence.status, func.count()).group_by(Occurrence.status)).tuples().all()
        )
        cursor = session.scalar(select(Connection.cursor).where(Connection.id == args["connection_id"]))
    store.close()
    return {"counts": counts, "digests": digests, "status": status, "cursor": cursor}


def child_pgdrop(args: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import text

    admin = _admin_engine(args["admin_url"])
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{args["db_name"]}" WITH (FORCE)'))
    admin.dispose()
    return {}


def child_check_provider(args: dict[str, Any]) -> dict[str, Any]:
    provider = _load_provider(args["provider"])
    return {"name": provider.name, "module": provider.__module__}


CHILDREN = {
    "generate": child_generate,
    "floor": child_floor,
    "prepare": child_prepare,
    "sync": child_sync,
    "inspect": child_inspect,
    "pgdrop": child_pgdrop,
    "check_provider": child_check_provider,
}


def _child_main() -> None:
    args = json.loads(sys.stdin.read())
    result = CHILDREN[args.pop("cmd")](args)
    sys.stdout.write(RESULT_MARK + json.dumps(result, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# The orchestrator (standard library only)
# --------------------------------------------------------------------------------------------


class ChildFailed(RuntimeError):
    pass


def run_child(cmd: str, **args: Any) -> dict[str, Any]:
    """Run one child in a fresh interpreter; arguments go through stdin (URLs stay out of ``ps``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.ics_sync", "_child"],
        input=json.dumps({"cmd": cmd, **args}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])  # type: ignore[no-any-return]
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    raise ChildFailed(f"child {cmd!r} failed (exit {proc.returncode}):\n{tail}")


def _place(src: Path, dst: Path) -> None:
    """Replace the source file the way a download would: new bytes, atomically."""
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _rows_written(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    inserted = {t: after["counts"][t] - before["counts"][t] for t in before["counts"]}
    old, new = before["digests"], after["digests"]
    updated = sum(1 for k, v in old.items() if new.get(k) != v)
    return {
        "occurrences_inserted": inserted["occurrences"],
        "occurrences_updated": updated,
        "history_inserted": inserted["occurrence_history"],
        "outbox_inserted": inserted["outbox"],
        "total": sum(inserted.values()) + updated,
    }


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for dist in ("icalendar", "recurring-ical-events", "x-wr-timezone", "SQLAlchemy", "psycopg", "alembic"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    provider_file = REPO_ROOT / "integrations" / "ics" / "provider.py"
    if provider_file.exists():
        info["provider_sha256"] = hashlib.sha256(provider_file.read_bytes()).hexdigest()[:16]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        info["git_head"] = head.stdout.strip() or None
    except OSError:
        info["git_head"] = None
    return info


@dataclass
class Sample:
    backend: str  # "-" for the floor
    scenario: str
    rep: int
    seconds: float
    cpu: float | None
    rss_mb: float
    vmhwm_mb: float | None
    report: dict[str, Any] | None = None
    rows: dict[str, int] | None = None
    count: int | None = None
    server_cpu: float | None = None  # PostgreSQL backends' share of ``cpu``
    cli_loaded: bool | None = None  # the child had imported ``alliance.cli`` (RSS of the real command)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(options: argparse.Namespace) -> dict[str, Any]:
    machine = _machine()
    provider = run_child("check_provider", provider=options.provider)
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="alliance-ics-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _log(f"provider: {provider['module']}.{provider['name']}  workdir: {workdir}")

    try:
        calendar = run_child("generate", seed=options.seed, dir=str(workdir))
    except BaseException:
        if not options.keep and not options.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    files = {v: workdir / f"{v}.ics" for v in STAMPS}
    source = workdir / "calendar.ics"
    expected = calendar["expected"]["total"]
    moves = calendar["moved_singles"] + calendar["moved_instances"]
    _log(
        f"calendar: {calendar['files']['base']['bytes'] / 1e6:.1f} MB, {calendar['vevents']} VEVENTs, "
        f"{expected} occurrences in the window ({calendar['expected']['series_instances']} series instances + "
        f"{calendar['expected']['singles']} single events); (d) moves {moves}"
    )

    backends: list[dict[str, Any]] = [{"name": "sqlite", "db_path": str(workdir / "alliance.db")}]
    if options.postgres:
        backends.append(
            {"name": "postgresql", "admin_url": options.postgres, "db_name": f"alliance_bench_{uuid.uuid4().hex[:10]}"}
        )

    samples: list[Sample] = []
    server_versions: dict[str, str] = {}
    try:
        for rep in range(options.repeat):
            floor = run_child("floor", path=str(files["base"]))
            samples.append(
                Sample(
                    backend="-",
                    scenario="floor",
                    rep=rep,
                    seconds=floor["seconds"],
                    cpu=floor["cpu"],
                    rss_mb=floor["ru_maxrss_mb"],
                    vmhwm_mb=floor.get("vmhwm_mb"),
                    count=floor["count"],
                )
            )
            _log(
                f"rep {rep + 1}/{options.repeat} floor: {floor['seconds']:.2f} s, "
                f"{floor['ru_maxrss_mb']:.0f} MB, {floor['count']} occurrences"
            )
            # Alternate the order of the back ends between repetitions so neither always runs first.
            for backend in backends if rep % 2 == 0 else backends[::-1]:
                _place(files["base"], source)
                prep = run_child(
                    "prepare",
                    backend=backend["name"],
                    db_path=backend.get("db_path"),
                    admin_url=backend.get("admin_url"),
                    db_name=backend.get("db_name"),
                    provider=options.provider,
                    source=str(source),
                )
                if "server_version" in prep:
                    server_versions[backend["name"]] = prep["server_version"]
                url, connection_id = prep["url"], prep["connection_id"]
                state = run_child("inspect", url=url, connection_id=connection_id)
                for scenario, variant in SEQUENCE:
                    if variant is not None and scenario != "full":  # "full" reads what prepare placed
                        _place(files[variant], source)
                    result = run_child("sync", url=url, connection_id=connection_id, provider=options.provider)
                    after = run_child("inspect", url=url, connection_id=connection_id)
                    rows = _rows_written(state, after)
                    state = after
                    samples.append(
                        Sample(
                            backend=backend["name"],
                            scenario=scenario,
                            rep=rep,
                            seconds=result["seconds"],
                            cpu=result["cpu"]
                            if backend["name"] == "sqlite" or result["server_cpu"] is not None
                            else None,
                            rss_mb=result["ru_maxrss_mb"],
                            vmhwm_mb=result.get("vmhwm_mb"),
                            report=result["report"],
                            rows=rows,
                            server_cpu=result["server_cpu"],
                            cli_loaded=result.get("cli_loaded"),
                        )
                    )
                    r = result["report"]
                    _log(
                        f"rep {rep + 1}/{options.repeat} {backend['name']} {scenario}: {result['seconds']:.2f} s, "
                        f"{result['ru_maxrss_mb']:.0f} MB, created {r['created']} updated {r['updated']} "
                        f"rescheduled {r['rescheduled']} cancelled {r['cancelled']} unchanged {r['unchanged']}, "
                        f"rows written {rows['total']}"
                    )
    finally:
        for backend in backends:
            if backend["name"] == "postgresql":
                try:
                    run_child("pgdrop", admin_url=backend["admin_url"], db_name=backend["db_name"])
                except ChildFailed as exc:
                    _log(f"could not drop the scratch database {backend['db_name']}: {exc}")
        if not options.keep and not options.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    machine["postgresql_server"] = server_versions.get("postgresql")
    summary = summarise(samples, expected=expected, moves=moves)
    return {
        "machine": machine,
        "config": {
            "repeat": options.repeat,
            "seed": options.seed,
            "now": NOW.isoformat(),
            "window": [w.isoformat() for w in window()],
            "provider": options.provider,
            "postgres": bool(options.postgres),
        },
        "calendar": calendar,
        "summary": summary,
        "samples": [s.__dict__ for s in samples],
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _changes(report: dict[str, Any]) -> int:
    return sum(report[k] for k in ("created", "updated", "rescheduled", "restored", "cancelled"))


def _stats(group: list[Sample]) -> dict[str, Any]:
    cpus = [s.cpu for s in group]
    return {
        "median_s": _median([s.seconds for s in group]),
        "min_s": min(s.seconds for s in group),
        "max_s": max(s.seconds for s in group),
        "median_cpu_s": _median([c for c in cpus if c is not None]) if None not in cpus else None,
        "rss_mb": _median([s.rss_mb for s in group]),
        "max_rss_mb": max(s.rss_mb for s in group),
    }


def _correctness(scenario: str, s: Sample, *, expected: int, moves: int) -> list[str]:
    """What a run did wrong beyond its time: rows written, the report's counts, RSS accounting."""
    problems = []
    if s.vmhwm_mb is not None and s.rss_mb > s.vmhwm_mb + 5:
        problems.append(f"rep {s.rep}: ru_maxrss {s.rss_mb:.0f} MB > VmHWM {s.vmhwm_mb:.0f} MB (inherited?)")
    if scenario == "floor":
        if s.count != expected:
            problems.append(f"rep {s.rep}: the floor saw {s.count} occurrences, the generator expected {expected}")
        return problems
    assert s.report is not None and s.rows is not None
    r, w = s.report, s.rows
    if scenario == "full" and (r["created"] != expected or w["occurrences_inserted"] != expected):
        problems.append(
            f"rep {s.rep}: created {r['created']}, inserted {w['occurrences_inserted']}, expected {expected}"
        )
    if scenario in ("resync", "restamp", "identical") and (w["total"] or _changes(r)):
        problems.append(f"rep {s.rep}: {_changes(r)} changes reported, {w['total']} rows written (expected 0)")
    if scenario == "resync" and r["unchanged"] != expected:
        problems.append(
            f"rep {s.rep}: the provider compared {r['unchanged']} occurrences, not {expected}: "
            "it skipped parsing, so (c) measured nothing"
        )
    if scenario == "moved" and (r["rescheduled"] != moves or _changes(r) != moves):
        problems.append(f"rep {s.rep}: rescheduled {r['rescheduled']} of {_changes(r)} changes, expected {moves}")
    return problems


def summarise(samples: list[Sample], *, expected: int, moves: int) -> list[dict[str, Any]]:
    """One row per (backend, scenario): medians, ratios to the floor's medians, and the verdict."""
    floor_group = [s for s in samples if s.scenario == "floor"]
    floor = _stats(floor_group)
    groups: list[tuple[str, str, list[Sample]]] = [("-", "floor", floor_group)]
    for backend in dict.fromkeys(s.backend for s in samples if s.backend != "-"):
        for scenario in [name for name in SCENARIOS if name != "floor"]:
            group = [s for s in samples if s.backend == backend and s.scenario == scenario]
            if group:
                groups.append((backend, scenario, group))
    rows: list[dict[str, Any]] = []
    for backend, scenario, group in groups:
        stats = _stats(group)
        time_ratio = stats["median_s"] / floor["median_s"]
        cpu_ratio = (
            stats["median_cpu_s"] / floor["median_cpu_s"]
            if stats["median_cpu_s"] is not None and floor["median_cpu_s"]
            else None
        )
        limit = TARGETS.get(scenario)
        problems: list[str] = []
        if limit is not None and time_ratio > limit:
            problems.append(f"time {time_ratio:.3f}x > {limit}x")
        if stats["max_rss_mb"] >= RSS_LIMIT_MB:
            problems.append(f"peak RSS {stats['max_rss_mb']:.0f} MB >= {RSS_LIMIT_MB:.0f} MB")
        for s in group:
            problems += _correctness(scenario, s, expected=expected, moves=moves)
        written = [s.rows["total"] for s in group if s.rows is not None]
        rows.append(
            {
                "backend": backend,
                "scenario": scenario,
                **stats,
                "time_ratio": time_ratio,
                "cpu_ratio": cpu_ratio,
                "rss_ratio": stats["rss_mb"] / floor["rss_mb"],
                "rows_written": max(written) if written else None,
                "report": group[-1].report,
                "target": {
                    "floor": "-",
                    "full": f"<= {TARGETS['full']}x",
                    "resync": f"<= {TARGETS['resync']}x, 0 rows",
                    "restamp": "(info) 0 rows",
                    "identical": "(info) 0 rows",
                    "moved": f"<= {TARGETS['moved']}x, {moves} rescheduled",
                }[scenario],
                "cpu_within_target": None if limit is None or cpu_ratio is None else cpu_ratio <= limit,
                "problems": list(dict.fromkeys(problems)),
            }
        )
    return rows


def format_table(summary: list[dict[str, Any]], *, markdown: bool = False) -> str:
    header = (
        "backend",
        "scenario",
        "median s",
        "min-max s",
        "x floor",
        "CPU s",
        "x floor",
        "peak RSS MB",
        "x floor",
        "rows written",
        "target",
        "result",
    )
    body = []
    for row in summary:
        cpu = row["median_cpu_s"]
        body.append(
            (
                row["backend"],
                SCENARIOS[row["scenario"]],
                f"{row['median_s']:.2f}",
                f"{row['min_s']:.2f}-{row['max_s']:.2f}",
                f"{row['time_ratio']:.2f}",
                "n/a" if cpu is None else f"{cpu:.2f}",
                "n/a" if row["cpu_ratio"] is None else f"{row['cpu_ratio']:.2f}",
                f"{row['rss_mb']:.0f}",
                f"{row['rss_ratio']:.2f}",
                "-" if row["rows_written"] is None else str(row["rows_written"]),
                row["target"],
                "MISS: " + "; ".join(row["problems"]) if row["problems"] else "pass",
            )
        )
    numeric = {2, 3, 4, 5, 6, 7, 8, 9}
    if markdown:
        rule = "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"
        return "\n".join(["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in body)])
    widths = [max(len(str(r[i])) for r in (header, *body)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ics_sync",
        description="ICS sync benchmark: Alliance's full mirror and re-syncs against the bare icalendar floor.",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each scenario (median reported; default 5)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run on PostgreSQL; an admin URL (a scratch database is created and dropped)",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every sample and the summary as JSON")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="calendar generator seed")
    parser.add_argument(
        "--provider", default=DEFAULT_PROVIDER, help="provider class as module:Class (default: %(default)s)"
    )
    parser.add_argument("--workdir", help="keep the calendars and SQLite database in this folder")
    parser.add_argument("--keep", action="store_true", help="do not delete the temporary folder")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    options = parser.parse_args(argv)
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")

    try:
        result = run_benchmark(options)
    except ChildFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    m = result["machine"]
    cal = result["calendar"]
    print()
    print(
        f"machine: {m['nproc']} CPUs ({m.get('cpu', '?')}), Python {m['python']}, "
        f"icalendar {m['versions']['icalendar']}, recurring-ical-events {m['versions']['recurring-ical-events']}, "
        f"SQLAlchemy {m['versions']['SQLAlchemy']}"
        + (f", PostgreSQL {m['postgresql_server']}" if m.get("postgresql_server") else "")
        + f"; git {m.get('git_head')}, integrations/ics/provider.py sha256 {m.get('provider_sha256')}"
    )
    print(
        f"calendar: {cal['files']['base']['bytes'] / 1e6:.1f} MB, {cal['vevents']} VEVENTs, "
        f"{cal['expected']['total']} occurrences in the window "
        f"({cal['expected']['series_instances']} from {SERIES} series + {cal['expected']['singles']} single events); "
        f"(d) moves {cal['moved_singles']} single events + {cal['moved_instances']} series instances"
    )
    load = m.get("loadavg_at_start")
    print(
        f"repeat {options.repeat}, median of each; ratios are to the floor's medians; "
        f"load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}\n"
        if load
        else f"repeat {options.repeat}, median of each; ratios are to the floor's medians\n"
    )
    print(format_table(result["summary"], markdown=options.markdown))
    print(
        f"\nTargets are on median wall time; every scenario must also stay under {RSS_LIMIT_MB:.0f} MB peak RSS. "
        "CPU s = the process's CPU time plus, on PostgreSQL, its server backends' (steadier on a busy machine)."
    )
    if any(s["cli_loaded"] is False for s in result["samples"]):
        print("note: alliance.cli could not be imported; sync RSS excludes the command line's modules.")
    for row in result["summary"]:
        if row["problems"] and row["cpu_within_target"]:
            print(
                f"note: {row['backend']} {row['scenario']} misses on wall time but its CPU ratio "
                f"({row['cpu_ratio']:.2f}x) is within the target: check the machine's load."
            )
    if options.json:
        options.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {options.json}")
    missed = [row for row in result["summary"] if row["problems"]]
    return 1 if options.check and missed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child_main()
    else:
        sys.exit(main())
