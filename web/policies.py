"""The policy library: staff pages to add, link and publish policies, and their JSON API."""

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field
from sqlmodel import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from improve.errors import Forbidden, InvalidInput, NotFound
from improve.settings import settings
from models import Policy, PolicyVersion
from models.db import get_engine, session_scope
from models.improvement import NO_NUL_PATTERN
from tasks import policies
from web.api import ERRORS, EVERY_ROUTE, ApiRoute, error_response
from web.auth import Staff
from web.forms import Id
from web.render import page

router = APIRouter(include_in_schema=False)
api_router = APIRouter(
    prefix="/api",
    tags=["policies"],
    route_class=ApiRoute,
    responses={status: ERRORS[status] for status in EVERY_ROUTE},
)

FIELD_NAMES = {
    "title": "Title",
    "summary": "Summary",
    "link": "Link",
    "owner_email": "Owner",
    "processes": "Service processes",
    "version": "Version",
    "changes": "What changed",
    "improvement": "Improvement",
}
DONE = {
    "added": "The policy is in the library.",
    "published": "Published: its notices are queued and go out with the next sweep.",
    "linked": "Linked.",
}


def _names(raw: str) -> list[str]:
    """Process names from a form field: one a line, or separated by commas."""
    return [part.strip() for part in re.split(r"[,\n]", raw) if part.strip()]


def _improvement_id(raw: str) -> int:
    """IMP-12, imp 12 or 12 → 12."""
    found = re.fullmatch(r"\s*(?:imp[-\s]?)?(\d{1,9})\s*", raw, re.IGNORECASE)
    if not found:
        raise InvalidInput({"improvement": "give its reference, e.g. IMP-12"})
    return int(found[1])


# --- pages ---------------------------------------------------------------------------------------


def _library(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 422,
) -> HTMLResponse:
    with Session(get_engine()) as session:
        rows = policies.policy_rows(session=session)
        subscribers = policies.subscriber_counts(session=session)
    context: dict[str, Any] = {
        "rows": rows,
        "subscribers": subscribers,
        "values": values or {},
        "errors": errors or {},
        "field_names": FIELD_NAMES,
    }
    return page(request, "policies.html", context, status_code=status_code if errors else 200)


@router.get("/policies")
def policy_library(request: Request) -> HTMLResponse:
    """Every policy: its version, owner, the processes it touches, when last published."""
    return _library(request)


@router.post("/policies")
def add_from_form(
    request: Request,
    title: Annotated[str, Form()] = "",
    summary: Annotated[str, Form()] = "",
    link: Annotated[str, Form()] = "",
    owner_email: Annotated[str, Form()] = "",
    processes: Annotated[str, Form()] = "",
) -> Response:
    values = {
        "title": title,
        "summary": summary,
        "link": link,
        "owner_email": owner_email,
        "processes": processes,
    }
    try:
        with session_scope() as session:
            policy = policies.add_policy(
                session=session,
                title=title,
                summary=summary,
                link=link,
                owner_email=owner_email,
                processes=_names(processes),
            )
            policy_id = policy.id
    except InvalidInput as exc:
        return _library(request, values=values, errors=exc.errors, status_code=exc.status_code)
    return RedirectResponse(f"/policies/{policy_id}?done=added", status_code=303)


def _policy_page(
    request: Request,
    policy_id: int,
    colleague: Any,
    *,
    done: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 422,
) -> HTMLResponse:
    with Session(get_engine()) as session:
        view = policies.policy_view(session=session, policy_id=policy_id)
        subscribers = policies.subscriber_counts(session=session)
    try:
        policies.check_may_publish(colleague=colleague, policy=view.policy)
        may_publish = True
    except Forbidden:
        may_publish = False
    context: dict[str, Any] = {
        "view": view,
        "policy": view.policy,
        "subscribers": subscribers,
        "may_publish": may_publish,
        "done": DONE.get(done, ""),
        "values": values or {},
        "errors": errors or {},
        "field_names": FIELD_NAMES,
    }
    return page(request, "policy.html", context, status_code=status_code if errors else 200)


@router.get("/policies/{policy_id}")
def policy_page(request: Request, policy_id: Id, colleague: Staff, done: str = "") -> HTMLResponse:
    """One policy: summary, link, processes, the improvements serving it, each version's
    notices (queued, held, sent, failed, skipped), and forms to publish and to link."""
    return _policy_page(request, policy_id, colleague, done=done)


@router.post("/policies/{policy_id}/versions")
def publish_from_form(
    request: Request,
    policy_id: Id,
    colleague: Staff,
    version: Annotated[str, Form()] = "",
    changes: Annotated[str, Form()] = "",
) -> Response:
    try:
        with session_scope() as session:
            policy = policies.get_policy(session=session, policy_id=policy_id)
            policies.check_may_publish(colleague=colleague, policy=policy)
            policies.publish(
                session=session,
                policy_id=policy_id,
                version=version,
                changes=changes,
                actor=colleague.email,
            )
    except InvalidInput as exc:
        values = {"version": version, "changes": changes}
        return _policy_page(
            request,
            policy_id,
            colleague,
            values=values,
            errors=exc.errors,
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/policies/{policy_id}?done=published", status_code=303)


@router.post("/policies/{policy_id}/links")
def link_from_form(
    request: Request,
    policy_id: Id,
    colleague: Staff,
    processes: Annotated[str, Form()] = "",
    improvement: Annotated[str, Form()] = "",
) -> Response:
    """Link service processes (by name) and/or an improvement (by reference) to the policy."""
    try:
        if not processes.strip() and not improvement.strip():
            raise InvalidInput({"processes": "name a process, or give an improvement below"})
        with session_scope() as session:
            if processes.strip():
                policies.link_processes(
                    session=session, policy_id=policy_id, names=_names(processes)
                )
            if improvement.strip():
                policies.link_improvement(
                    session=session,
                    policy_id=policy_id,
                    improvement_id=_improvement_id(improvement),
                )
    except NotFound as exc:
        if exc.kind == "policy":
            raise
        errors = {"improvement": str(exc)}
        values = {"processes": processes, "improvement": improvement}
        return _policy_page(request, policy_id, colleague, values=values, errors=errors)
    except InvalidInput as exc:
        values = {"processes": processes, "improvement": improvement}
        return _policy_page(request, policy_id, colleague, values=values, errors=exc.errors)
    return RedirectResponse(f"/policies/{policy_id}?done=linked", status_code=303)


# --- API -----------------------------------------------------------------------------------------


class PolicyCreate(BaseModel):
    # The patterns are documented here and checked by tasks/policies.py, with messages a person
    # can act on (pydantic's own pattern errors would quote the regex).
    title: str = Field(
        max_length=200,
        description="Unique in the library.",
        json_schema_extra={"pattern": policies.TEXT_PATTERN},
    )
    summary: str = Field(default="", max_length=2000, json_schema_extra={"pattern": NO_NUL_PATTERN})
    link: str = Field(
        default="",
        max_length=500,
        description="Where the full text is published: an http(s) address, or empty.",
        json_schema_extra={"pattern": policies.LINK_PATTERN},
    )
    owner_email: str | None = Field(
        default=None,
        max_length=254,
        description="A colleague's email; empty or null: nobody yet.",
        json_schema_extra={"pattern": NO_NUL_PATTERN},
    )
    processes: list[Annotated[str, Field(max_length=80)]] = Field(
        default_factory=list,
        max_length=100,
        description="Names of service processes; blank ones are ignored.",
        json_schema_extra={"items": {"type": "string", "maxLength": 80, "pattern": NO_NUL_PATTERN}},
    )


class VersionCreate(BaseModel):
    version: str = Field(
        description='e.g. "2.1"; not one already published for this policy.',
        json_schema_extra={"pattern": policies.VERSION_PATTERN},
    )
    changes: str = Field(
        max_length=2000,
        description="What is new, as the notice says it.",
        json_schema_extra={"pattern": policies.TEXT_PATTERN},
    )


class ProgressOut(BaseModel):
    queued: int = Field(description="Due to go now.")
    held: int = Field(description="Waiting: a contact window, a weekly limit, or the relay.")
    sending: int
    sent: int
    failed: int
    skipped: int = Field(description="Not sent on purpose: consent withdrawn meanwhile.")
    total: int


class VersionOut(BaseModel):
    id: int
    version: str
    changes: str
    published_by: str
    published_at: datetime
    notices: ProgressOut


class PublishedOut(VersionOut):
    policy_id: int
    customers: int = Field(description="Customers who agreed to policy news.")
    partners: int = Field(description="Partners who hear of policies.")
    queued: int = Field(description="Notices queued by this request.")


class PolicyOut(BaseModel):
    id: int
    title: str
    summary: str
    link: str
    owner_email: str | None
    owner_name: str | None
    version: str = Field(description="The latest published; empty for a draft.")
    published_at: datetime | None
    processes: list[str]
    url: str


class PolicyList(BaseModel):
    items: list[PolicyOut]
    subscribers: dict[str, int] = Field(description="customers and partners a notice goes to.")


class PolicyDetail(PolicyOut):
    improvement_ids: list[int]
    versions: list[VersionOut] = Field(description="Newest first, each with its notices.")


def _policy_out(policy: Policy, owner: Any, processes: list[Any]) -> dict[str, Any]:
    return {
        **policy.model_dump(include={"id", "title", "summary", "link", "version", "published_at"}),
        "owner_email": owner.email if owner else None,
        "owner_name": owner.name if owner else None,
        "processes": [p.name for p in processes],
        "url": f"{settings.base_url}/policies/{policy.id}",
    }


def _version_out(version: PolicyVersion, progress: dict[str, int]) -> dict[str, Any]:
    return {
        **version.model_dump(include={"id", "version", "changes", "published_by", "published_at"}),
        "notices": ProgressOut(**progress),
    }


@api_router.get("/policies", response_model=PolicyList)
def list_policies() -> PolicyList:
    """The policy library by title, and how many a notice would go to now."""
    with Session(get_engine()) as session:
        rows = policies.policy_rows(session=session)
        return PolicyList(
            items=[PolicyOut(**_policy_out(r.policy, r.owner, r.processes)) for r in rows],
            subscribers=policies.subscriber_counts(session=session),
        )


def _detail(session: Session, policy_id: int) -> PolicyDetail:
    view = policies.policy_view(session=session, policy_id=policy_id)
    return PolicyDetail(
        **_policy_out(view.policy, view.owner, view.processes),
        improvement_ids=[i.id for i in view.improvements if i.id is not None],
        versions=[VersionOut(**_version_out(v.version, v.progress)) for v in view.versions],
    )


@api_router.get(
    "/policies/{policy_id}",
    response_model=PolicyDetail,
    responses={404: error_response("No such policy.")},
)
def read_policy(policy_id: Id) -> PolicyDetail:
    """One policy with its processes, improvements, and each version's notices."""
    with Session(get_engine()) as session:
        return _detail(session, policy_id)


@api_router.post(
    "/policies",
    status_code=201,
    response_model=PolicyDetail,
    responses={409: error_response("A policy already has this title (named in `errors`).")},
)
def create_policy(data: PolicyCreate, response: Response) -> PolicyDetail:
    """Add a policy to the library, a draft until its first version is published."""
    with session_scope() as session:
        policy = policies.add_policy(session=session, **data.model_dump())
        policy_id = policy.id
    assert policy_id is not None
    response.headers["Location"] = f"/api/policies/{policy_id}"
    with Session(get_engine()) as session:
        return _detail(session, policy_id)


@api_router.post(
    "/policies/{policy_id}/versions",
    status_code=201,
    response_model=PublishedOut,
    responses={
        403: ERRORS[403],
        404: error_response("No such policy."),
        409: error_response("This version was published already (named in `errors`)."),
    },
)
def publish_version(policy_id: Id, data: VersionCreate, colleague: Staff) -> PublishedOut:
    """Publish a new version (the policy's owner, or operations): one notice is queued for each
    customer who agreed to policy news and each partner who hears of policies."""
    with session_scope() as session:
        policy = policies.get_policy(session=session, policy_id=policy_id)
        policies.check_may_publish(colleague=colleague, policy=policy)
        published = policies.publish(
            session=session,
            policy_id=policy_id,
            version=data.version,
            changes=data.changes,
            actor=colleague.email,
        )
        version_id = published.id
    assert version_id is not None
    with Session(get_engine()) as session:
        published = session.get(PolicyVersion, version_id)  # type: ignore[assignment]
        progress = policies.notice_progress(session=session, version_id=version_id)
        subscribers = policies.subscriber_counts(session=session)
        return PublishedOut(
            **_version_out(published, progress),
            policy_id=policy_id,
            customers=subscribers["customers"],
            partners=subscribers["partners"],
            queued=progress["total"],
        )
