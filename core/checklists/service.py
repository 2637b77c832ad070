"""Checklist templates and runs: what the CLI, the API and the pages call.

Every function is scoped to one therapist: another therapist's template or session is unknown
(``UnknownTemplate`` / ``core.clients.UnknownSession``), exactly like one that does not exist.
Templates are immutable versions; the first time a therapist's checklists are needed, version 1
of each list is written from :mod:`core.checklists.defaults`. A run points at the version it
started with, so later edits never change what an old session's list asked.

Answer texts and skip reasons are encrypted with the client's key; log lines carry ids only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.checklists.defaults import DEFAULTS, LOCATION_KEY
from core.checklists.items import (
    MAX_TEXT,
    AnswerStatus,
    Applies,
    ChecklistItem,
    InvalidChecklist,
    Phase,
    Response,
    clean_items,
)
from core.checklists.models import ChecklistAnswer, ChecklistRun, ChecklistTemplate
from core.clients import Client, Modality, SessionView, TherapySession, UnknownSession, get_session
from core.crypto import KeyDestroyed, Owner
from core.links import get_checkin
from core.links.models import ClientCheckin
from core.store.db import Store
from core.store.models import Connection, Occurrence
from core.sync.types import Status

log = logging.getLogger(__name__)

MAX_ANSWER_TEXT = 1000
_RETRIES = 3
T = TypeVar("T")


class ChecklistError(Exception):
    """A checklist request that cannot be done; the message is one line for a user."""


class UnknownTemplate(ChecklistError, LookupError):
    """No template of this therapist has that id."""


class SessionCancelled(ChecklistError):
    """The session was cancelled: its checklists are closed."""


# -- views --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateView:
    id: int
    phase: Phase
    version: int
    items: tuple[ChecklistItem, ...]
    created_at: datetime
    current: bool  # the version new runs start with


@dataclass(frozen=True, slots=True)
class AnswerView:
    key: str
    status: AnswerStatus
    text: str | None
    reason: str | None
    answered_by: int
    answered_at: datetime
    erased: bool = False  # the client's key was destroyed: text and reason are gone


@dataclass(frozen=True, slots=True)
class ItemState:
    item: ChecklistItem
    answer: AnswerView | None  # the newest answer, or None while open


@dataclass(frozen=True, slots=True)
class RunView:
    phase: Phase
    template: TemplateView
    run_id: int | None  # None until the first answer
    started_by: int | None
    started_at: datetime | None
    updated_at: datetime | None
    items: tuple[ItemState, ...]  # only the items that apply to this session

    @property
    def complete(self) -> bool:
        return all(state.answer is not None for state in self.items)


@dataclass(frozen=True, slots=True)
class OpenFlag:
    """A blocking item not done yet (S2, the client's location, on an online session)."""

    session_id: int
    phase: Phase
    key: str
    text: str
    skipped: bool  # skipped with a reason still leaves the flag open: the item has to be done


@dataclass(frozen=True, slots=True)
class SessionChecklists:
    session: SessionView
    online: bool
    first_session: bool
    runs: tuple[RunView, ...]  # pre, start, post
    flags: tuple[OpenFlag, ...]
    # The client confirmed today's place and callback number on their own page (S2 answered ahead).
    client_confirmed_location: bool = False

    def run(self, phase: Phase) -> RunView:
        return next(r for r in self.runs if r.phase is phase)


@dataclass(frozen=True, slots=True)
class AnswerInput:
    """One answer as sent by a person: done (with a text where the item needs one) or skipped with a reason."""

    key: str
    status: AnswerStatus | str
    text: str | None = None
    reason: str | None = None


# -- helpers ------------------------------------------------------------------------------------


def _retrying(action: Callable[[], T]) -> T:
    """Run ``action`` again when a concurrent writer won a unique constraint (both are idempotent)."""
    for attempt in range(_RETRIES):
        try:
            return action()
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
            log.info("concurrent write on checklists; retrying (attempt %d)", attempt + 2)
    raise RuntimeError("unreachable")  # pragma: no cover


def parse_phase(value: str | Phase) -> Phase:
    """``pre`` / ``start`` / ``post``."""
    if isinstance(value, Phase):
        return value
    try:
        return Phase(value.strip().lower())
    except ValueError:
        raise InvalidChecklist("the list is one of 'pre', 'start' or 'post'", "phase") from None


def _items_of(row: ChecklistTemplate) -> tuple[ChecklistItem, ...]:
    return tuple(ChecklistItem.from_json(i) for i in row.items)


def _view(row: ChecklistTemplate, current_version: int) -> TemplateView:
    return TemplateView(
        id=row.id,
        phase=Phase(row.phase),
        version=row.version,
        items=_items_of(row),
        created_at=row.created_at,
        current=row.version == current_version,
    )


def _seed_defaults(store: Store, therapist_id: int) -> None:
    """Write version 1 of every list the therapist has no version of yet (idempotent)."""

    def seed() -> None:
        with store.session() as session:
            have = set(
                session.scalars(select(ChecklistTemplate.phase).where(ChecklistTemplate.therapist_id == therapist_id))
            )
            for phase, items in DEFAULTS.items():
                if phase.value not in have:
                    session.add(
                        ChecklistTemplate(
                            therapist_id=therapist_id, phase=phase.value, version=1, items=[i.to_json() for i in items]
                        )
                    )

    _retrying(seed)


def _current_versions(session: Session, therapist_id: int) -> dict[str, int]:
    rows = session.execute(
        select(ChecklistTemplate.phase, func.max(ChecklistTemplate.version))
        .where(ChecklistTemplate.therapist_id == therapist_id)
        .group_by(ChecklistTemplate.phase)
    ).all()
    return {phase: int(version) for phase, version in rows}


def _current_templates(session: Session, therapist_id: int) -> dict[Phase, ChecklistTemplate]:
    """The newest version of each of the therapist's lists, in one query (versions are few)."""
    newest: dict[Phase, ChecklistTemplate] = {}
    for row in session.scalars(
        select(ChecklistTemplate)
        .where(ChecklistTemplate.therapist_id == therapist_id)
        .order_by(ChecklistTemplate.version)
    ):
        newest[Phase(row.phase)] = row
    return newest


def _current_row(session: Session, therapist_id: int, phase: Phase) -> ChecklistTemplate:
    row = session.scalar(
        select(ChecklistTemplate)
        .where(ChecklistTemplate.therapist_id == therapist_id, ChecklistTemplate.phase == phase.value)
        .order_by(ChecklistTemplate.version.desc())
        .limit(1)
    )
    if row is None:  # pragma: no cover - callers seed the defaults first
        raise UnknownTemplate(f"no {phase.value} checklist")
    return row


# -- templates ----------------------------------------------------------------------------------


def list_templates(
    store: Store, therapist_id: int, *, phase: Phase | None = None, all_versions: bool = False
) -> list[TemplateView]:
    """The therapist's checklists (current versions, or every version), by list then version."""
    _seed_defaults(store, therapist_id)
    with store.session() as session:
        current = _current_versions(session, therapist_id)
        query = select(ChecklistTemplate).where(ChecklistTemplate.therapist_id == therapist_id)
        if phase is not None:
            query = query.where(ChecklistTemplate.phase == phase.value)
        rows = session.scalars(query).all()
        views = [_view(r, current[r.phase]) for r in rows if all_versions or r.version == current[r.phase]]
    order = list(Phase)
    return sorted(views, key=lambda v: (order.index(v.phase), v.version))


def get_template(store: Store, therapist_id: int, template_id: int) -> TemplateView:
    """One version of one of the therapist's checklists."""
    _seed_defaults(store, therapist_id)
    with store.session() as session:
        row = session.get(ChecklistTemplate, template_id)
        if row is None or row.therapist_id != therapist_id:
            raise UnknownTemplate(f"no checklist template with id {template_id}")
        return _view(row, _current_versions(session, therapist_id)[row.phase])


def new_template_version(
    store: Store, therapist_id: int, phase: Phase | str, items: Sequence[ChecklistItem]
) -> TemplateView:
    """Store an edited checklist as the next version; runs already started keep their version.

    The session-start list must keep its location item (S2), blocking and for online sessions:
    it can be reworded, not dropped.
    """
    chosen = parse_phase(phase)
    cleaned = clean_items(items)
    if chosen is Phase.START:
        location = next((i for i in cleaned if i.key.upper() == LOCATION_KEY), None)
        if location is None or not location.blocking or location.response is not Response.TEXT:
            raise InvalidChecklist(
                f"the session-start list keeps item {LOCATION_KEY} (the client's location and callback number), "
                "blocking and answered with a text; reword it rather than remove it",
                "items",
            )
        if location.applies is Applies.FIRST_SESSION:
            raise InvalidChecklist(f"item {LOCATION_KEY} is asked at every online session", "items")
    _seed_defaults(store, therapist_id)

    def insert() -> TemplateView:
        with store.session() as session:
            latest = _current_row(session, therapist_id, chosen)
            row = ChecklistTemplate(
                therapist_id=therapist_id,
                phase=chosen.value,
                version=latest.version + 1,
                items=[i.to_json() for i in cleaned],
            )
            session.add(row)
            session.flush()
            log.info("checklist template %d: %s version %d", row.id, chosen.value, row.version)
            return _view(row, row.version)

    return _retrying(insert)


# -- runs ---------------------------------------------------------------------------------------


def _detail_context(run_id: int, key: str, client_id: int) -> str:
    return f"checklist_answers.detail|{run_id}|{key}|{client_id}"


def _first_session(session: Session, view: SessionView) -> bool:
    """No earlier session of the client took place or is still planned (cancelled ones do not count)."""
    earlier = session.scalar(
        select(func.count())
        .select_from(TherapySession)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .where(
            TherapySession.client_id == view.client_id,
            TherapySession.id != view.id,
            Occurrence.status != Status.CANCELLED.value,
            (Occurrence.start_utc < view.start)
            | ((Occurrence.start_utc == view.start) & (TherapySession.id < view.id)),
        )
    )
    return not earlier


def _answers(store: Store, session: Session, run: ChecklistRun, client_id: int) -> dict[str, AnswerView]:
    """The newest answer per item key of ``run``."""
    newest: dict[str, AnswerView] = {}
    rows = session.scalars(
        select(ChecklistAnswer).where(ChecklistAnswer.run_id == run.id).order_by(ChecklistAnswer.id)
    ).all()
    for row in rows:
        text = reason = None
        erased = False
        if row.detail is not None:
            try:
                raw = store.keyring.decrypt(
                    session, Owner("client", client_id), row.detail, _detail_context(run.id, row.item_key, client_id)
                )
                data: dict[str, Any] = json.loads(raw)
                text, reason = data.get("text"), data.get("reason")
            except KeyDestroyed:
                erased = True
        newest[row.item_key] = AnswerView(
            key=row.item_key,
            status=AnswerStatus(row.status),
            text=text,
            reason=reason,
            answered_by=row.answered_by,
            answered_at=row.answered_at,
            erased=erased,
        )
    return newest


def _run_view(
    store: Store,
    session: Session,
    phase: Phase,
    run: ChecklistRun | None,
    current: ChecklistTemplate,
    current_versions: dict[str, int],
    view: SessionView,
    online: bool,
    first: bool,
) -> RunView:
    template_row = session.get_one(ChecklistTemplate, run.template_id) if run is not None else current
    template = _view(template_row, current_versions[phase.value])
    answers = _answers(store, session, run, view.client_id) if run is not None else {}
    states = tuple(
        ItemState(item, answers.get(item.key))
        for item in template.items
        if item.applies_to(online=online, first_session=first)
    )
    return RunView(
        phase=phase,
        template=template,
        run_id=run.id if run is not None else None,
        started_by=run.started_by if run is not None else None,
        started_at=run.started_at if run is not None else None,
        updated_at=run.updated_at if run is not None else None,
        items=states,
    )


def _open_blocking(
    session_id: int,
    phase: Phase,
    items: Iterable[ChecklistItem],
    statuses: Mapping[str, AnswerStatus],
    *,
    online: bool,
    first: bool,
) -> list[OpenFlag]:
    """The one rule behind every flag: a blocking item that applies and whose newest answer is not done."""
    return [
        OpenFlag(session_id=session_id, phase=phase, key=item.key, text=item.text, skipped=item.key in statuses)
        for item in items
        if item.blocking
        and item.applies_to(online=online, first_session=first)
        and statuses.get(item.key) is not AnswerStatus.DONE
    ]


def _flags(
    view: SessionView, online: bool, first: bool, runs: Iterable[RunView], *, client_confirmed: bool = False
) -> tuple[OpenFlag, ...]:
    if view.status is Status.CANCELLED or not online:
        return ()  # nothing blocks an in-person or a cancelled session
    flags: list[OpenFlag] = []
    for run in runs:
        statuses = {s.item.key: s.answer.status for s in run.items if s.answer is not None}
        flags += _open_blocking(view.id, run.phase, run.template.items, statuses, online=online, first=first)
    return tuple(_without_confirmed_location(flags, {view.id} if client_confirmed else set()))


def _without_confirmed_location(flags: Iterable[OpenFlag], confirmed: set[int]) -> list[OpenFlag]:
    """Drop the S2 flag of sessions whose client confirmed today's place and callback number themselves."""
    return [
        f for f in flags if not (f.session_id in confirmed and f.phase is Phase.START and f.key.upper() == LOCATION_KEY)
    ]


def _client_confirmed(store: Store, therapist_id: int, session_ids: Iterable[int]) -> set[int]:
    """Sessions among ``session_ids`` for which the client confirmed both today's place and a callback
    number on their link (``core.links``' check-in). One column query narrows them down; only the
    sessions with a check-in are decrypted."""
    ids = sorted(set(session_ids))
    with_checkin: list[int] = []
    with store.session() as session:
        for chunk in _chunks(ids):
            with_checkin += session.scalars(select(ClientCheckin.session_id).where(ClientCheckin.session_id.in_(chunk)))
    return _confirmed(store, therapist_id, with_checkin)


def _confirmed(store: Store, therapist_id: int, with_checkin: Iterable[int]) -> set[int]:
    """Of sessions known to have a check-in, those where it holds both a place and a callback number."""
    confirmed = set()
    for session_id in with_checkin:
        checkin = get_checkin(store, therapist_id, session_id)
        if checkin is not None and checkin.location and checkin.callback:
            confirmed.add(session_id)
    return confirmed


def _session_checklists(store: Store, therapist_id: int, view: SessionView) -> SessionChecklists:
    online = view.modality.value == "online"
    with store.session() as session:
        first = _first_session(session, view)
        current_versions = _current_versions(session, therapist_id)
        runs = {r.phase: r for r in session.scalars(select(ChecklistRun).where(ChecklistRun.session_id == view.id))}
        run_views = tuple(
            _run_view(
                store,
                session,
                phase,
                runs.get(phase.value),
                _current_row(session, therapist_id, phase),
                current_versions,
                view,
                online,
                first,
            )
            for phase in Phase
        )
    confirmed = (
        online and view.status is not Status.CANCELLED and bool(_client_confirmed(store, therapist_id, [view.id]))
    )
    return SessionChecklists(
        session=view,
        online=online,
        first_session=first,
        runs=run_views,
        flags=_flags(view, online, first, run_views, client_confirmed=confirmed),
        client_confirmed_location=confirmed,
    )


def session_checklists(store: Store, therapist_id: int, session_id: int) -> SessionChecklists:
    """The three lists of one of the therapist's sessions, with their answers and open flags."""
    view = get_session(store, therapist_id, session_id)
    _seed_defaults(store, therapist_id)
    return _session_checklists(store, therapist_id, view)


def open_flags(
    store: Store,
    therapist_id: int,
    session_ids: Sequence[int] | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[int, list[OpenFlag]]:
    """Open flags per session (only sessions with at least one): the given sessions, those overlapping
    ``[start, end)``, or all of them.

    A handful of column queries however many sessions there are (no ORM entities, no decryption:
    a flag needs only answer statuses); the rule itself is :func:`_open_blocking`, as for one session.
    """
    with store.session() as session:
        seeded = len(_current_templates(session, therapist_id)) == len(Phase)
    if not seeded:
        _seed_defaults(store, therapist_id)
    query = (
        select(TherapySession.id, TherapySession.client_id, ClientCheckin.session_id)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .join(Client, Client.id == TherapySession.client_id)
        .join(Connection, Connection.id == Occurrence.connection_id)
        # Whether the client checked in on their link (S2 may be answered there): no extra query.
        .outerjoin(ClientCheckin, ClientCheckin.session_id == TherapySession.id)
        .where(
            Client.therapist_id == therapist_id,
            Connection.therapist_id == therapist_id,
            TherapySession.modality == Modality.ONLINE.value,  # nothing blocks an in-person session
            Occurrence.status != Status.CANCELLED.value,
        )
        .order_by(Occurrence.start_utc, TherapySession.id)
    )
    if start is not None:
        query = query.where(Occurrence.end_utc > start)
    if end is not None:
        query = query.where(Occurrence.start_utc < end)
    if session_ids is not None:
        query = query.where(TherapySession.id.in_(list(session_ids)))
    with store.session() as session:
        listed = session.execute(query).all()
        sessions = [(sid, cid) for sid, cid, _ in listed]
        checked_in = {sid for sid, _, checkin in listed if checkin is not None}
        if not sessions:
            return {}
        current = _current_templates(session, therapist_id)
        runs: dict[tuple[int, str], tuple[int, int]] = {}  # (session, phase) -> (run id, template id)
        for chunk in _chunks([sid for sid, _ in sessions]):
            rows = session.execute(
                select(ChecklistRun.id, ChecklistRun.session_id, ChecklistRun.phase, ChecklistRun.template_id).where(
                    ChecklistRun.session_id.in_(chunk)
                )
            )
            for run_id, sid, phase, template_id in rows:
                runs[(sid, phase)] = (run_id, template_id)
        templates = {t.id: t for t in current.values()}
        missing = sorted({tid for _, tid in runs.values()} - set(templates))
        for chunk in _chunks(missing):
            templates.update(
                {t.id: t for t in session.scalars(select(ChecklistTemplate).where(ChecklistTemplate.id.in_(chunk)))}
            )
        statuses: dict[int, dict[str, AnswerStatus]] = {}
        for chunk in _chunks(sorted(run_id for run_id, _ in runs.values())):
            answers = session.execute(
                select(ChecklistAnswer.run_id, ChecklistAnswer.item_key, ChecklistAnswer.status)
                .where(ChecklistAnswer.run_id.in_(chunk))
                .order_by(ChecklistAnswer.id)
            )
            for run_id, key, status in answers:
                statuses.setdefault(run_id, {})[key] = AnswerStatus(status)  # the newest wins
        # Only blocking items can flag: most lists have one (S2) or none.
        blocking = {tid: [i for i in _items_of(t) if i.blocking] for tid, t in templates.items()}
        needs_first = any(i.applies is Applies.FIRST_SESSION for items in blocking.values() for i in items)
        firsts = _first_sessions(session, {cid for _, cid in sessions}) if needs_first else {}
    found: dict[int, list[OpenFlag]] = {}
    for sid, cid in sessions:
        flags: list[OpenFlag] = []
        for phase in Phase:
            run = runs.get((sid, phase.value))
            template_id = run[1] if run is not None else current[phase].id
            if not blocking[template_id]:
                continue
            answered = statuses.get(run[0], {}) if run is not None else {}
            flags += _open_blocking(
                sid, phase, blocking[template_id], answered, online=True, first=firsts.get(cid) == sid
            )
        if flags:
            found[sid] = flags
    located = [
        sid for sid, flags in found.items() if sid in checked_in and any(f.key.upper() == LOCATION_KEY for f in flags)
    ]
    if located:
        confirmed = _confirmed(store, therapist_id, located)
        for sid in confirmed:
            remaining = _without_confirmed_location(found[sid], confirmed)
            if remaining:
                found[sid] = remaining
            else:
                del found[sid]
    return found


def _chunks(ids: Sequence[int], size: int = 500) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _first_sessions(session: Session, client_ids: Iterable[int]) -> dict[int, int]:
    """Client id -> id of its first session that is not cancelled (by start, then id), as _first_session."""
    firsts: dict[int, int] = {}
    for chunk in _chunks(sorted(client_ids)):
        rows = session.execute(
            select(TherapySession.client_id, TherapySession.id)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .where(TherapySession.client_id.in_(chunk), Occurrence.status != Status.CANCELLED.value)
            .order_by(Occurrence.start_utc, TherapySession.id)
        )
        for client_id, session_id in rows:
            firsts.setdefault(client_id, session_id)
    return firsts


def _clean_answer(item: ChecklistItem, answer: AnswerInput, index: int) -> tuple[AnswerStatus, str | None, str | None]:
    try:
        status = AnswerStatus(answer.status)
    except ValueError:
        raise InvalidChecklist("an answer's status is 'done' or 'skipped'", f"answers.{index}.status") from None
    text = " ".join(answer.text.split()) if answer.text else None
    reason = " ".join(answer.reason.split()) if answer.reason else None
    if text is not None and len(text) > MAX_ANSWER_TEXT:
        raise InvalidChecklist(f"an answer's text has at most {MAX_ANSWER_TEXT} characters", f"answers.{index}.text")
    if reason is not None and len(reason) > MAX_TEXT:
        raise InvalidChecklist(f"a skip reason has at most {MAX_TEXT} characters", f"answers.{index}.reason")
    if status is AnswerStatus.SKIPPED:
        if not reason:
            raise InvalidChecklist(f"item {item.key} is skipped: say why", f"answers.{index}.reason")
        return status, text, reason
    if reason:
        raise InvalidChecklist(f"item {item.key} is done: a skip reason does not apply", f"answers.{index}.reason")
    if item.response is Response.TEXT and not text:
        raise InvalidChecklist(f"item {item.key} needs a text when it is done", f"answers.{index}.text")
    return status, text, reason


def record_answers(
    store: Store,
    therapist_id: int,
    session_id: int,
    phase: Phase | str,
    answers: Sequence[AnswerInput],
) -> RunView:
    """Record answers to one list of a session (all at once or a few at a time); the newest answer counts.

    The first answer starts the run on the current template version. Answers name items of that
    version which apply to this session; nothing is stored if any answer is invalid.
    """
    chosen = parse_phase(phase)
    view = get_session(store, therapist_id, session_id)
    if view.status is Status.CANCELLED:
        raise SessionCancelled("this session was cancelled; its checklists are closed")
    if not answers:
        raise InvalidChecklist("send at least one answer", "answers")
    _seed_defaults(store, therapist_id)
    online = view.modality.value == "online"

    def write() -> None:
        with store.session() as session:
            first = _first_session(session, view)
            run = session.scalar(
                select(ChecklistRun).where(ChecklistRun.session_id == view.id, ChecklistRun.phase == chosen.value)
            )
            template = (
                session.get_one(ChecklistTemplate, run.template_id)
                if run is not None
                else _current_row(session, therapist_id, chosen)
            )
            applicable = {
                i.key.upper(): i for i in _items_of(template) if i.applies_to(online=online, first_session=first)
            }
            cleaned: list[tuple[ChecklistItem, AnswerStatus, str | None, str | None]] = []
            seen: set[str] = set()
            for index, answer in enumerate(answers):
                item = applicable.get(answer.key.strip().upper())
                if item is None:
                    raise InvalidChecklist(
                        f"this session's {chosen.value} list has no item {answer.key.strip()[:40]!r}",
                        f"answers.{index}.key",
                    )
                if item.key in seen:
                    raise InvalidChecklist(f"item {item.key} is answered twice", f"answers.{index}.key")
                seen.add(item.key)
                cleaned.append((item, *_clean_answer(item, answer, index)))
            now = datetime.now(UTC)
            if run is None:
                run = ChecklistRun(
                    session_id=view.id,
                    phase=chosen.value,
                    template_id=template.id,
                    started_by=therapist_id,
                    started_at=now,
                    updated_at=now,
                )
                session.add(run)
                session.flush()
            run.updated_at = now
            cipher = None
            for item, status, text, reason in cleaned:
                detail = None
                if text or reason:
                    if cipher is None:
                        cipher = store.keyring.cipher(
                            session, Owner("client", view.client_id), parent=Owner("therapist", therapist_id)
                        )
                    payload = json.dumps({"text": text, "reason": reason}, ensure_ascii=False).encode()
                    detail = cipher.encrypt(payload, _detail_context(run.id, item.key, view.client_id))
                session.add(
                    ChecklistAnswer(
                        run_id=run.id,
                        item_key=item.key,
                        status=status.value,
                        detail=detail,
                        answered_by=therapist_id,
                        answered_at=now,
                    )
                )
            log.info("checklist run %d (session %d, %s): %d answer(s)", run.id, view.id, chosen.value, len(cleaned))

    _retrying(write)
    return _session_checklists(store, therapist_id, view).run(chosen)


__all__ = [
    "MAX_ANSWER_TEXT",
    "AnswerInput",
    "AnswerView",
    "ChecklistError",
    "ItemState",
    "OpenFlag",
    "RunView",
    "SessionCancelled",
    "SessionChecklists",
    "TemplateView",
    "UnknownSession",
    "UnknownTemplate",
    "get_template",
    "list_templates",
    "new_template_version",
    "open_flags",
    "parse_phase",
    "record_answers",
    "session_checklists",
]
