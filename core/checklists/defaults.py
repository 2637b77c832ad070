"""The version-1 checklists every therapist starts from, condensed from reference/clinical.md (section D).

Worded here, not quoted from any source. Keys are stable across versions: an edited item keeps its
key, so answers, flags and reports can follow an item through rewordings. ``refs`` name the
source numbers of the reference's bibliography, so a therapist can see why an item is there.
"""

from __future__ import annotations

from core.checklists.items import Applies, ChecklistItem, Phase, Response

_ONLINE = Applies.ONLINE
_EVERY = Applies.EVERY_SESSION

PRE_SESSION: tuple[ChecklistItem, ...] = (
    ChecklistItem(
        "T1",
        "Video platform covered by a data-processing or business-associate agreement; a unique "
        "link or passcode for this session; waiting room on; recording off.",
        _ONLINE,
        refs=("38", "39", "45"),
    ),
    ChecklistItem(
        "T2",
        "Private, quiet room with the door closed and a do-not-disturb sign; headphones ready.",
        _EVERY,
        refs=("39", "40", "41"),
    ),
    ChecklistItem(
        "T3", "On a secure network (no public Wi-Fi); system and antivirus up to date.", _ONLINE, refs=("39",)
    ),
    ChecklistItem(
        "T4",
        "Camera at eye level with your face centred, light from the front, a neutral background "
        "without personal items.",
        _ONLINE,
        refs=("38", "39", "40", "41"),
    ),
    ChecklistItem("T5", "Phone silenced, notifications off, unrelated programs and tabs closed.", _EVERY, refs=("40",)),
    ChecklistItem("T6", "Sound and picture tested; a second device and a phone within reach.", _ONLINE, refs=("40",)),
    ChecklistItem(
        "T7",
        "The client's emergency details are current: usual address for sessions, an emergency "
        "contact they agreed to, the local emergency number and the nearest crisis service.",
        _EVERY,
        refs=("37", "42", "44"),
    ),
    ChecklistItem("T8", "A number to call the client back on is on file.", _ONLINE, refs=("38", "41")),
    ChecklistItem("T9", "Your licence covers the place the client will be joining from.", _ONLINE, refs=("36", "37")),
    ChecklistItem(
        "T10",
        "The client has the link and the reminder; you will join a few minutes early (late join: "
        "resend the link after about 2 minutes, phone after about 5).",
        _ONLINE,
        refs=("43",),
    ),
    ChecklistItem("T11", "Looked at the latest alliance ratings and any open flags.", _EVERY, refs=("1", "12")),
)

SESSION_START: tuple[ChecklistItem, ...] = (
    ChecklistItem(
        "S1",
        "Identity confirmed (full name and date of birth at a first contact, recognition later).",
        _EVERY,
        refs=("38", "44"),
    ),
    ChecklistItem(
        "S2",
        "Where the client is right now (address) and the number to call them back on today.",
        _ONLINE,
        Response.TEXT,
        sensitive=True,
        blocking=True,
        refs=("37", "38", "41", "42"),
    ),
    ChecklistItem(
        "S3",
        "Privacy on both sides: who else is in the room; for a minor, where the responsible adult is.",
        _EVERY,
        refs=("38", "41"),
    ),
    ChecklistItem("S4", "Both of you see and hear each other well.", _ONLINE, refs=("38", "39")),
    ChecklistItem(
        "S5",
        "Fallback plan said again: if the call drops, you phone the client or you reschedule.",
        _ONLINE,
        refs=("38", "42"),
    ),
    ChecklistItem(
        "S6",
        "Asked how working by video suits the client (first session, then every few sessions or "
        "after technical trouble).",
        _ONLINE,
        refs=("33", "34", "35"),
    ),
    ChecklistItem(
        "S7",
        "Consent to online work covered: benefits and risks, remaining privacy risk, no recording, "
        "the emergency plan, when to meet in person instead.",
        Applies.FIRST_SESSION,
        refs=("36", "38", "42"),
    ),
)

POST_SESSION: tuple[ChecklistItem, ...] = (
    ChecklistItem(
        "P1",
        "The alliance rating link went out (or was given in the last minutes of the call).",
        _EVERY,
        refs=("1", "11"),
    ),
    ChecklistItem(
        "P2", "Logistics noted: actual start and end, join times, dropped connections, switch to phone.", _EVERY
    ),
    ChecklistItem("P3", "Progress note written; any process notes kept apart.", _EVERY, refs=("46",)),
    ChecklistItem(
        "P4", "Next appointment booked; its reminder and calendar entry use neutral wording.", _EVERY, refs=("49", "51")
    ),
    ChecklistItem(
        "P5", "Any safety concern written down and followed up as planned.", _EVERY, sensitive=True, refs=("37",)
    ),
    ChecklistItem("P6", "Meeting closed; no recordings, downloads or chat files left behind.", _ONLINE, refs=("36",)),
    ChecklistItem("P7", "Technical problems written down to fix before next time.", _ONLINE),
)

DEFAULTS: dict[Phase, tuple[ChecklistItem, ...]] = {
    Phase.PRE: PRE_SESSION,
    Phase.START: SESSION_START,
    Phase.POST: POST_SESSION,
}

# The session-start location item: required by the telehealth guidelines for every online session,
# so a new version may reword it but never drop it or make it non-blocking.
LOCATION_KEY = "S2"

__all__ = ["DEFAULTS", "LOCATION_KEY", "POST_SESSION", "PRE_SESSION", "SESSION_START"]
