"""Errors in Google's JSON shape.

Calendar API v3 answers errors with the "legacy" Google JSON error::

    {"error": {"code": 410, "message": "...",
               "errors": [{"domain": "global", "reason": "fullSyncRequired", "message": "..."}],
               "status": "..."}}

``googleapiclient`` raises ``HttpError`` for any status >= 300 and clients branch on
``error.errors[0].reason``; the OAuth endpoints answer RFC 6749 errors instead
(``{"error": "invalid_grant", "error_description": "..."}``), see :class:`OAuthError`.
"""

from __future__ import annotations

from typing import Any

# google.rpc canonical codes that Google's JSON errors carry next to the HTTP status.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """A Calendar API error; the app renders it as Google's JSON error body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        item: dict[str, Any] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location is not None:
            item["locationType"] = self.location_type or "parameter"
            item["location"] = self.location
        error: dict[str, Any] = {"errors": [item], "code": self.code, "message": self.message}
        status = _STATUS.get(self.code)
        if status is not None:  # Google sends no canonical status with e.g. 410 Gone
            error["status"] = status
        return {"error": error}


def bad_request(message: str, reason: str = "invalid", *, location: str | None = None) -> ApiError:
    return ApiError(400, reason, message, location=location, location_type="parameter" if location else None)


def not_found() -> ApiError:
    return ApiError(404, "notFound", "Not Found")


def invalid_credentials() -> ApiError:
    return ApiError(401, "authError", "Invalid Credentials", location="Authorization", location_type="header")


def login_required() -> ApiError:
    return ApiError(401, "required", "Login Required.", location="Authorization", location_type="header")


def full_sync_required() -> ApiError:
    return ApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")


def condition_not_met() -> ApiError:
    return ApiError(412, "conditionNotMet", "Precondition Failed", location="If-Match", location_type="header")


# Canned faults the control API can inject (status, domain, reason, message).
FAULTS: dict[str, tuple[int, str, str, str]] = {
    "rateLimitExceeded": (403, "usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    "rateLimitExceeded429": (429, "usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    "userRateLimitExceeded": (403, "usageLimits", "userRateLimitExceeded", "User Rate Limit Exceeded"),
    "quotaExceeded": (403, "usageLimits", "quotaExceeded", "Calendar usage limits exceeded."),
    "backendError": (500, "global", "backendError", "Backend Error"),
    "serviceUnavailable": (503, "global", "backendError", "Service Unavailable"),
}


class OAuthError(Exception):
    """An RFC 6749 error from the token endpoint (``{"error": ..., "error_description": ...}``)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}
