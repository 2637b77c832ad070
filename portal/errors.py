"""RFC 9457 problem details for the API, plain pages for people; neither ever echoes input.

An error response must not carry a password, token, e-mail address or event title, so details
are fixed strings chosen here or by our own handlers, and validation errors name the failing
fields without their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
API_PREFIXES = ("/api/", "/webhooks/")


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(default="about:blank", description="A URI reference identifying the problem type.")
    title: str = Field(description="Short summary of the problem type (the HTTP reason phrase).")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(default="", description="What went wrong with this request.")


class FieldError(BaseModel):
    """One failing field of a request."""

    name: str = Field(description="The field, dotted for nested fields (e.g. 'name' or 'items.0.start').")
    location: str = Field(description="Where the field is: body, query, path, header or cookie.")
    message: str


class ValidationProblem(Problem):
    """A 422 problem listing each failing field by name (never its value)."""

    errors: list[FieldError]


class ApiProblem(StarletteHTTPException):
    """An HTTP error whose problem+json carries extra members (RFC 9457 extensions), e.g. choices."""

    def __init__(self, status_code: int, detail: str, **extra: Any) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.extra = extra


class LoginRequired(Exception):
    """Raised by page dependencies: the browser is sent to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__("login required")
        self.next_path = next_path


def wants_html(request_path: str, accept: str) -> bool:
    """Pages for browsers, problem+json for the API, webhooks and any non-browser client."""
    return not request_path.startswith(API_PREFIXES) and "text/html" in accept


# RFC 9110 renamed these; Python < 3.13 still has the RFC 7231 phrases.
_RFC9110_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _phrase(status: int) -> str:
    if status in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, detail: str = "", headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": _phrase(status), "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# What a person sees for an error status; fixed texts only.
_PAGE_TEXT = {
    400: "The request could not be understood.",
    401: "Please sign in.",
    403: "This form has expired or was not sent from this site. Go back, reload the page and try again.",
    404: "There is nothing here. The link may be mistyped, expired or already used.",
    405: "That does not work here.",
    413: "What was sent is too large.",
    422: "Some fields are missing or invalid.",
    429: "Too many attempts. Please wait a moment and try again.",
    500: "Something went wrong on our side. Please try again; if it keeps happening, tell your administrator.",
}


def error_page(
    templates: Jinja2Templates | None,
    request: Request | None,
    status: int,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A plain HTML error page with a fixed text."""
    message = _PAGE_TEXT.get(status, _PAGE_TEXT[500] if status >= 500 else _PAGE_TEXT[400])
    if templates is not None and request is not None:
        context = {"status": status, "phrase": _phrase(status), "message": message}
        return templates.TemplateResponse(request, "error.html", context, status_code=status, headers=headers)
    return HTMLResponse(
        f"<!doctype html><title>{status} {_phrase(status)}</title><h1>{_phrase(status)}</h1><p>{message}</p>",
        status_code=status,
        headers=headers,
    )


def _templates(request: Request) -> Jinja2Templates | None:
    return getattr(request.app.state, "templates", None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # registered for this type only
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 401 and request.url.path.startswith("/api/"):
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="alliance"'}
    if wants_html(request.url.path, request.headers.get("accept", "")):
        return error_page(_templates(request), request, exc.status_code, headers)
    detail = exc.detail if isinstance(exc.detail, str) else ""
    if detail == _phrase(exc.status_code):  # starlette's default detail repeats the title
        detail = ""
    extra = exc.extra if isinstance(exc, ApiProblem) else {}
    return problem(exc.status_code, detail, headers, **extra)


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "body"
        name = ".".join(loc[1:]) or location
        # error["msg"] is pydantic's fixed text ("Field required", "String should have at most 100
        # characters"); error["input"] is the submitted value and is deliberately dropped.
        errors.append(FieldError(name=name, location=location, message=str(error.get("msg", "invalid"))))
    return errors


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for this type only
    if wants_html(request.url.path, request.headers.get("accept", "")):
        return error_page(_templates(request), request, 422)
    errors = _field_errors(exc)
    names = ", ".join(dict.fromkeys(e.name for e in errors))
    return problem(
        422,
        f"Invalid request: {names}.",
        errors=[e.model_dump() for e in errors],
    )


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)  # registered for this type only
    target = "/login" if exc.next_path in ("", "/") else f"/login?next={quote(exc.next_path, safe='/')}"
    return RedirectResponse(target, status_code=303)


def install_error_handlers(app: FastAPI) -> None:
    """Problem details for HTTP and validation errors, a redirect for pages that need a login.

    Unexpected exceptions are answered by :class:`portal.middleware.UnhandledErrors`, which also
    keeps their text out of the log.
    """
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LoginRequired, _login_required)


# -- OpenAPI ---------------------------------------------------------------------------------------

_REF = "#/components/schemas/{model}"


def _problem_content(name: str) -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model=name)}}}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite an OpenAPI document so error responses are the problem+json we really send."""
    _, defs = models_json_schema([(Problem, "validation"), (ValidationProblem, "validation")], ref_template=_REF)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs.get("$defs", {}))
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            if "422" in responses:
                responses["422"] = {"description": "Validation error", "content": _problem_content("ValidationProblem")}
            if operation.get("security"):
                responses.setdefault("401", {"description": "Missing, invalid or revoked credentials"})
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "Request body that cannot be decoded"})
                responses.setdefault("413", {"description": "Request body larger than 1 MB"})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and code != "422" and "content" not in response:
                    response["content"] = _problem_content("Problem")
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
