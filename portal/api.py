"""JSON API of the signed-in therapist's own account (``/api/v1``): who am I, personal API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response

from core.accounts import ApiTokenView, create_api_token, get_therapist, list_api_tokens, revoke_api_token
from portal.deps import CurrentTherapist, StoreDep
from portal.schemas import ApiTokenCreate, ApiTokenCreated, ApiTokenPublic, TherapistPublic

router = APIRouter(prefix="/api/v1", tags=["account"])

TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The token's id (see the listing).")]


def _public(view: ApiTokenView) -> ApiTokenPublic:
    return ApiTokenPublic(
        id=view.id,
        name=view.name,
        prefix=view.prefix,
        created_at=view.created_at,
        last_used_at=view.last_used_at,
        revoked=view.revoked_at is not None,
    )


@router.get("/me")
def me(store: StoreDep, therapist_id: CurrentTherapist) -> TherapistPublic:
    """The therapist the credentials belong to."""
    t = get_therapist(store, therapist_id)
    return TherapistPublic(id=t.id, email=t.email, display_name=t.display_name, timezone=t.timezone)


@router.get("/tokens")
def tokens(store: StoreDep, therapist_id: CurrentTherapist) -> list[ApiTokenPublic]:
    """The therapist's own API tokens (revoked ones included), oldest first."""
    return [_public(v) for v in list_api_tokens(store, therapist_id)]


@router.post("/tokens", status_code=201)
def create_token(body: ApiTokenCreate, store: StoreDep, therapist_id: CurrentTherapist) -> ApiTokenCreated:
    """Create a personal API token; the secret is in this answer only."""
    new = create_api_token(store, therapist_id, body.name)
    view = next(v for v in list_api_tokens(store, therapist_id) if v.id == new.id)
    return ApiTokenCreated(**_public(view).model_dump(), token=new.token)


@router.delete("/tokens/{token_id}", status_code=204, responses={404: {"description": "No such token of yours"}})
def revoke_token(token_id: TokenId, request: Request, store: StoreDep, therapist_id: CurrentTherapist) -> Response:
    """Revoke one of the therapist's tokens (idempotent); another therapist's token is a 404."""
    if not revoke_api_token(store, token_id, therapist_id=therapist_id):
        raise HTTPException(status_code=404, detail="No such token.")
    # Tokens verified recently are remembered by hash only: forget them all, so this one stops now.
    request.app.state.token_cache.clear()
    return Response(status_code=204)
