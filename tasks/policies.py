"""The policy library: policies, what they touch, publishing a version and the notices it sends."""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from improve.errors import Forbidden, ImprovementNotFound, InvalidInput, NotFound
from improve.settings import settings
from models import (
    Access,
    Colleague,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementPolicy,
    OutboxEmail,
    OutboxStatus,
    Partner,
    Policy,
    PolicyProcess,
    PolicyVersion,
    Purpose,
    ServiceProcess,
)
from models.db import utcnow
from models.improvement import WHITESPACE
from tasks import links
from tasks.consent import queue_customer_emails
from tasks.mail import queue_email
from tasks.outbox import outbox_progress

CUSTOMER_TEMPLATE = "policy_notice"
PARTNER_TEMPLATE = "partner_policy_notice"
# What the fields take, as patterns the API documents and these functions check (spaces around a
# value are trimmed, as str.strip() does: WHITESPACE is that set).
_WS, _SOLID = f"[{WHITESPACE}]", f"[^{WHITESPACE}\\x00]"
# A version as people write one: "2", "2.1", "2025-a"; no spaces, so it reads well in a subject.
VERSION_PATTERN = rf"^{_WS}*[0-9A-Za-z][0-9A-Za-z.\-]{{0,19}}{_WS}*$"
# Something to read: at least one character that is not a space, and no NUL.
TEXT_PATTERN = rf"^[^\x00]*{_SOLID}[^\x00]*$"
# A web address, or nothing.
LINK_PATTERN = rf'^{_WS}*(?:https?://[^{WHITESPACE}\x00<>"]+)?{_WS}*$'


class PolicyNotFound(NotFound):
    def __init__(self, policy_id: int) -> None:
        super().__init__("policy", policy_id)


class PolicyConflict(InvalidInput):
    """A title already taken, or a version already published: the field is named, as for bad
    input, but it is a conflict with what is stored."""

    status_code = 409


# --- the library -----------------------------------------------------------------------------


def _text(errors: dict[str, str], name: str, value: str | None, most: int) -> str:
    text = (value or "").strip()
    if "\x00" in text:
        errors[name] = "must not contain NUL characters"
    elif len(text) > most:
        errors[name] = f"must be at most {most:,} characters"
    return text


def _owner(session: Session, email: str | None, errors: dict[str, str]) -> int | None:
    if not (email or "").strip():
        return None
    assert email is not None
    if "\x00" in email:  # names nobody, and PostgreSQL refuses it in a query
        errors["owner_email"] = "must not contain NUL characters"
        return None
    found = session.exec(
        select(Colleague).where(func.lower(Colleague.email) == email.strip().lower())
    ).first()
    if found is None:
        errors["owner_email"] = f"no colleague has the email {email.strip()!r}"
        return None
    return found.id


def _processes(session: Session, names: Iterable[str], errors: dict[str, str]) -> list[int]:
    wanted = [name.strip() for name in names if name.strip()]
    if any("\x00" in name for name in wanted):  # names nothing; PostgreSQL refuses it in a query
        errors["processes"] = "must not contain NUL characters"
        return []
    found = {
        p.name: p.id
        for p in session.exec(
            select(ServiceProcess).where(col(ServiceProcess.name).in_(wanted))
        ).all()
    }
    unknown = [name for name in wanted if name not in found]
    if unknown:
        errors["processes"] = f"no service process is called {', '.join(map(repr, unknown))}"
    return [i for i in dict.fromkeys(found[name] for name in wanted if name in found) if i]


def _check_link(errors: dict[str, str], link: str) -> None:
    if "link" not in errors and not re.fullmatch(LINK_PATTERN, link):
        errors["link"] = "must be a web address starting with https:// or http://"


def add_policy(
    *,
    session: Session,
    title: str,
    summary: str = "",
    link: str = "",
    owner_email: str | None = None,
    processes: Iterable[str] = (),
) -> Policy:
    """Add a policy to the library (a draft until a version is published); the caller commits.

    A title another policy has is a conflict; an unknown owner or process is named, and nothing
    is stored.
    """
    errors: dict[str, str] = {}
    title = _text(errors, "title", title, 200)
    if not title and "title" not in errors:
        errors["title"] = "is required"
    summary = _text(errors, "summary", summary, 2000)
    link = _text(errors, "link", link, 500)
    _check_link(errors, link)
    owner_id = _owner(session, owner_email, errors)
    process_ids = _processes(session, processes, errors)
    if errors:
        raise InvalidInput(errors)
    _title_free(session, title)
    policy = Policy(title=title, summary=summary, link=link, owner_id=owner_id)
    session.add(policy)
    session.flush()
    assert policy.id is not None
    for process_id in process_ids:
        session.add(PolicyProcess(policy_id=policy.id, process_id=process_id))
    session.flush()
    return policy


def _title_free(session: Session, title: str, but: int | None = None) -> None:
    taken = session.exec(
        select(Policy.id).where(func.lower(Policy.title) == title.lower(), Policy.id != but)
    ).first()
    if taken is not None:
        raise PolicyConflict({"title": f"policy {taken} is already called {title!r}"})


def get_policy(*, session: Session, policy_id: int) -> Policy:
    policy = session.get(Policy, policy_id)
    if policy is None:
        raise PolicyNotFound(policy_id)
    return policy


def update_policy(
    *,
    session: Session,
    policy_id: int,
    title: str | None = None,
    summary: str | None = None,
    link: str | None = None,
    owner_email: str | None = None,
) -> Policy:
    """Change what is given of a policy's title, summary, link and owner; the caller commits."""
    policy = get_policy(session=session, policy_id=policy_id)
    errors: dict[str, str] = {}
    if title is not None:
        title = _text(errors, "title", title, 200)
        if not title and "title" not in errors:
            errors["title"] = "cannot be blank"
    if summary is not None:
        summary = _text(errors, "summary", summary, 2000)
    if link is not None:
        link = _text(errors, "link", link, 500)
        _check_link(errors, link)
    owner_id = _owner(session, owner_email, errors) if owner_email is not None else None
    if errors:
        raise InvalidInput(errors)
    if title is not None:
        _title_free(session, title, but=policy_id)
        policy.title = title
    if summary is not None:
        policy.summary = summary
    if link is not None:
        policy.link = link
    if owner_email is not None:
        policy.owner_id = owner_id
    session.add(policy)
    session.flush()
    return policy


def link_processes(*, session: Session, policy_id: int, names: Iterable[str]) -> int:
    """Link the named service processes to the policy; linking one twice is once. Returns how
    many links are new."""
    get_policy(session=session, policy_id=policy_id)
    errors: dict[str, str] = {}
    ids = _processes(session, names, errors)
    if errors:
        raise InvalidInput(errors)
    if not ids:
        raise InvalidInput({"processes": "name at least one service process"})
    have = set(
        session.exec(select(PolicyProcess.process_id).where(PolicyProcess.policy_id == policy_id))
    )
    new = [i for i in ids if i not in have]
    session.add_all(PolicyProcess(policy_id=policy_id, process_id=i) for i in new)
    session.flush()
    return len(new)


def unlink_process(*, session: Session, policy_id: int, process_id: int) -> bool:
    result = session.exec(
        delete(PolicyProcess).where(
            col(PolicyProcess.policy_id) == policy_id, col(PolicyProcess.process_id) == process_id
        )
    )
    return bool(result.rowcount)


def link_improvement(*, session: Session, policy_id: int, improvement_id: int) -> bool:
    """Say that an improvement serves a policy; saying it twice is once. True when new."""
    get_policy(session=session, policy_id=policy_id)
    if session.get(Improvement, improvement_id) is None:
        raise ImprovementNotFound(improvement_id)
    if session.get(ImprovementPolicy, (improvement_id, policy_id)) is not None:
        return False
    session.add(ImprovementPolicy(improvement_id=improvement_id, policy_id=policy_id))
    session.flush()
    return True


def unlink_improvement(*, session: Session, policy_id: int, improvement_id: int) -> bool:
    result = session.exec(
        delete(ImprovementPolicy).where(
            col(ImprovementPolicy.policy_id) == policy_id,
            col(ImprovementPolicy.improvement_id) == improvement_id,
        )
    )
    return bool(result.rowcount)


# --- publishing ------------------------------------------------------------------------------


def check_may_publish(*, colleague: Colleague, policy: Policy) -> None:
    """Who may publish a policy's new version, and so write to all its subscribers: its owner,
    or operations (and admins)."""
    if policy.owner_id == colleague.id or Access(colleague.access).includes(Access.operations):
        return
    raise Forbidden(
        f"Only the policy's owner or operations may publish {policy.title!r}; you are signed in "
        f"as {colleague.name}, whose role is {colleague.access}."
    )


def publish(
    *, session: Session, policy_id: int, version: str, changes: str, actor: str
) -> PolicyVersion:
    """Publish a new version of a policy and queue its notices, in the caller's transaction.

    A version already published for this policy is refused (409, naming it). Each customer who
    agreed to policy news and each partner who hears of policies gets one notice for the version
    (see queue_notices); the sweep sends them.
    """
    policy = get_policy(session=session, policy_id=policy_id)
    errors: dict[str, str] = {}
    if not re.fullmatch(VERSION_PATTERN, version or ""):
        errors["version"] = (
            "must be 1 to 20 letters, digits, dots or hyphens, starting with a letter or digit"
        )
    version = (version or "").strip()
    changes = _text(errors, "changes", changes, 2000)
    if not changes and "changes" not in errors:
        errors["changes"] = "say what changed: the notice tells subscribers"
    if errors:
        raise InvalidInput(errors)
    earlier = session.exec(
        select(PolicyVersion).where(
            PolicyVersion.policy_id == policy_id, PolicyVersion.version == version
        )
    ).first()
    if earlier is not None:
        raise PolicyConflict(
            {
                "version": f"version {version} of {policy.title!r} was published on "
                f"{earlier.published_at:%Y-%m-%d} by {earlier.published_by}"
            }
        )
    now = utcnow()
    # Conditional on the version we read: of two publishes at once, one finds it changed and is
    # refused, so one version is not published (and its subscribers told) twice.
    moved = session.exec(
        update(Policy)
        .where(col(Policy.id) == policy_id, col(Policy.version) == policy.version)
        .values(version=version, published_at=now)
    )
    if moved.rowcount != 1:
        raise PolicyConflict(
            {"version": f"{policy.title!r} was published by someone else meanwhile: reload"}
        )
    published = PolicyVersion(
        policy_id=policy_id, version=version, changes=changes, published_by=actor, published_at=now
    )
    session.add(published)
    session.flush()
    session.refresh(policy)
    queue_notices(session=session, version_id=published.id)  # type: ignore[arg-type]
    return published


def notice_prefix(version_id: int) -> str:
    """The start of every notice key of one version: f"policy:{version_id}:"."""
    return f"policy:{version_id}:"


def queue_notices(*, session: Session, version_id: int) -> dict[str, int]:
    """One notice per subscriber of this version, however often it is called; the caller commits.

    Customers who agreed to policy news (in their language and format, within their window and
    weekly limit: tasks/consent.py) and partners who hear of policies. Keys
    f"policy:{version_id}:customer:{id}" and f"policy:{version_id}:partner:{id}". Returns
    {"customers": .., "partners": .., "queued": new rows}.
    """
    published = session.get(PolicyVersion, version_id)
    if published is None:
        raise NotFound("policy version", version_id)
    policy = get_policy(session=session, policy_id=published.policy_id)
    prefix = notice_prefix(version_id)
    about = {
        "policy_title": policy.title,
        "summary": policy.summary,
        "version": published.version,
        "changes": published.changes,
        "link": policy.link,
    }
    customers = session.exec(
        select(Customer)
        .join(CustomerConsent, col(CustomerConsent.customer_id) == Customer.id)
        .where(
            CustomerConsent.purpose == Purpose.policy_news,
            CustomerConsent.granted == True,  # noqa: E712  (SQL, not Python truthiness)
        )
        .order_by(col(Customer.id))
    ).all()
    queued = queue_customer_emails(
        session=session,
        template=CUSTOMER_TEMPLATE,
        purpose=Purpose.policy_news,
        emails=((f"{prefix}customer:{c.id}", c, about) for c in customers),
    )
    partners = session.exec(
        select(Partner).where(Partner.hears_policies == True).order_by(col(Partner.id))  # noqa: E712
    ).all()
    already = set(
        session.exec(
            select(OutboxEmail.idempotency_key).where(
                col(OutboxEmail.idempotency_key).startswith(f"{prefix}partner:")
            )
        ).all()
    )
    for partner in partners:
        key = f"{prefix}partner:{partner.id}"
        if key in already:
            continue
        queued += 1
        queue_email(
            session=session,
            key=key,
            to=partner.email,
            template=PARTNER_TEMPLATE,
            context={
                **about,
                "partner_name": partner.name,
                "contact_name": partner.contact_name or partner.name,
            },
            links={"unsubscribe_url": partner_stop_url(partner.id)},
        )
    return {"customers": len(customers), "partners": len(partners), "queued": queued}


# --- partners stop hearing of policies by a link in the notice -------------------------------


def _stop_message(partner_id: int) -> str:
    # Bound to the partner; the prefix keeps it apart from the other signed links.
    return f"unsubscribe:partner-policies:{partner_id}"


def partner_stop_url(partner_id: int | None) -> str:
    """The link in each partner_policy_notice that stops them (signed; it never expires)."""
    assert partner_id is not None
    token = links.signature(_stop_message(partner_id))
    return f"{settings.base_url}/partners/{partner_id}/policies/stop/{token}"


def check_partner_stop(*, session: Session, partner_id: int, token: str) -> Partner:
    """The partner a stop link is for; a bad signature and an unknown partner get one refusal."""
    partner = session.get(Partner, partner_id)
    if not links.signed(_stop_message(partner_id), token) or partner is None:
        raise links.unsigned()
    return partner


def skip_partner_notices(*, session: Session, partner: Partner) -> int:
    """Skip the policy notices still waiting for a partner who no longer hears of policies."""
    # Conditional on still being queued: a row a sender claimed meanwhile is the sender's.
    result = session.exec(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.recipient) == partner.email,
            col(OutboxEmail.template) == PARTNER_TEMPLATE,
            col(OutboxEmail.status) == OutboxStatus.queued,
        )
        .values(
            status=OutboxStatus.skipped,
            last_error=f"skipped: {partner.name} no longer hears of policies",
        )
    )
    return int(result.rowcount or 0)


def notice_progress(*, session: Session, version_id: int) -> dict[str, int]:
    """How a version's notices stand (tasks/outbox.py outbox_progress: queued, held, sending,
    sent, failed, skipped), and their total."""
    counts = outbox_progress(session=session, key_prefix=notice_prefix(version_id))
    return {**counts, "total": sum(counts.values())}


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRow:
    policy: Policy
    owner: Colleague | None
    processes: list[ServiceProcess]


def subscriber_counts(*, session: Session) -> dict[str, int]:
    """Who a version published now would go to: customers agreeing to policy news, partners who
    hear of policies."""
    customers = session.exec(
        select(func.count())
        .select_from(CustomerConsent)
        .where(
            CustomerConsent.purpose == Purpose.policy_news,
            CustomerConsent.granted == True,  # noqa: E712
        )
    ).one()
    partners = session.exec(
        select(func.count()).select_from(Partner).where(Partner.hears_policies == True)  # noqa: E712
    ).one()
    return {"customers": int(customers), "partners": int(partners)}


def _processes_of(session: Session, policy_ids: list[int]) -> dict[int, list[ServiceProcess]]:
    found: dict[int, list[ServiceProcess]] = {i: [] for i in policy_ids}
    for policy_id, process in session.exec(
        select(PolicyProcess.policy_id, ServiceProcess)
        .join(ServiceProcess, col(ServiceProcess.id) == PolicyProcess.process_id)
        .where(col(PolicyProcess.policy_id).in_(policy_ids))
        .order_by(col(ServiceProcess.name))
    ).all():
        found[policy_id].append(process)
    return found


def policy_rows(*, session: Session) -> list[PolicyRow]:
    """The library: every policy by title, with its owner and processes."""
    policies = session.exec(select(Policy).order_by(col(Policy.title))).all()
    ids = [p.id for p in policies if p.id is not None]
    processes = _processes_of(session, ids)
    owners = {
        c.id: c
        for c in session.exec(
            select(Colleague).where(col(Colleague.id).in_({p.owner_id for p in policies}))
        )
    }
    return [
        PolicyRow(p, owners.get(p.owner_id), processes[p.id])  # type: ignore[index]
        for p in policies
    ]


@dataclass(frozen=True)
class VersionRow:
    version: PolicyVersion
    progress: dict[str, int]


@dataclass(frozen=True)
class PolicyView:
    policy: Policy
    owner: Colleague | None
    processes: list[ServiceProcess]
    improvements: list[Improvement]
    versions: list[VersionRow]  # newest first


def policy_view(*, session: Session, policy_id: int) -> PolicyView:
    """One policy with what it touches, what serves it, and each version's notices."""
    policy = get_policy(session=session, policy_id=policy_id)
    improvements = session.exec(
        select(Improvement)
        .join(ImprovementPolicy, col(ImprovementPolicy.improvement_id) == Improvement.id)
        .where(ImprovementPolicy.policy_id == policy_id)
        .order_by(col(Improvement.id))
    ).all()
    versions = session.exec(
        select(PolicyVersion)
        .where(PolicyVersion.policy_id == policy_id)
        .order_by(col(PolicyVersion.published_at).desc(), col(PolicyVersion.id).desc())
    ).all()
    return PolicyView(
        policy=policy,
        owner=session.get(Colleague, policy.owner_id) if policy.owner_id else None,
        processes=_processes_of(session, [policy_id])[policy_id],
        improvements=list(improvements),
        versions=[
            VersionRow(v, notice_progress(session=session, version_id=v.id))  # type: ignore[arg-type]
            for v in versions
        ],
    )


def policies_of_process(*, session: Session, process_id: int) -> list[Policy]:
    """The policies a service process serves, by title (the process page sets them beside its
    footprint)."""
    return list(
        session.exec(
            select(Policy)
            .join(PolicyProcess, col(PolicyProcess.policy_id) == Policy.id)
            .where(PolicyProcess.process_id == process_id)
            .order_by(col(Policy.title))
        ).all()
    )


def policies_of_improvement(*, session: Session, improvement_id: int) -> list[Policy]:
    """The policies an improvement serves, by title."""
    return list(
        session.exec(
            select(Policy)
            .join(ImprovementPolicy, col(ImprovementPolicy.policy_id) == Policy.id)
            .where(ImprovementPolicy.improvement_id == improvement_id)
            .order_by(col(Policy.title))
        ).all()
    )
