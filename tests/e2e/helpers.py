"""Waiting as a person would: for an email, for a flow run, with a deadline and a clear failure."""

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import arun_deployment
from sqlmodel import Session, select

from improve.stack import Stack
from models import ActionItem, ApprovalRequest, Improvement, OutboxEmail, Transition
from models.db import session_scope
from tasks.access import start_session
from tests.smtpd import Received, SmtpServer
from web import auth

DEADLINE = 60.0  # seconds: a flow run takes a few; a minute means something is wrong
T = TypeVar("T")
UNFINISHED = [StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED, StateType.CANCELLING]


async def eventually(
    check: Callable[[], T | None | Awaitable[T | None]], what: str, describe: Callable[[], str]
) -> T:
    """Poll `check` until it returns something truthy; fail saying what did happen."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found  # type: ignore[return-value]
        await asyncio.sleep(0.2)
    raise AssertionError(f"waited {DEADLINE:.0f} s for {what}; so far:\n{describe()}")


def inbox(smtp: SmtpServer) -> str:
    return "\n".join(f"  to {m.recipients}: {m.subject}" for m in smtp.received) or "  no email"


def mail_to(smtp: SmtpServer, address: str, containing: str = "") -> list[Received]:
    """The emails to `address` whose subject or body contains `containing`."""
    return [m for m in smtp.received if address in m.recipients and containing in _body(m)]


def _body(message: Received) -> str:
    part = message.message.get_body(preferencelist=("plain", "html"))
    return f"{message.subject}\n{part.get_content() if part else ''}"


async def wait_for_mail(
    smtp: SmtpServer, address: str, containing: str = "", count: int = 1
) -> list[Received]:
    """The emails to `address` (whose subject or body contains `containing`), once `count` came."""
    return await eventually(
        lambda: found if len(found := mail_to(smtp, address, containing)) >= count else None,
        f"{count} email(s) to {address} containing {containing!r}",
        lambda: inbox(smtp),
    )


def links(message: Received, kind: str) -> list[str]:
    """The links of one kind (approvals, actions) in an email's plain-text part."""
    return re.findall(rf"https?://[^\s/]+/{kind}/\d+/[A-Za-z0-9_\-]+", _body(message))


async def flow_runs(**filters: object) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(**filters))  # type: ignore[arg-type]


async def runs_for(improvement_id: int, since: datetime) -> list[FlowRun]:
    """The flow runs tagged with this improvement since `since`, oldest first.

    Ids start again at 1 once a test has emptied the tables (SQLite), so an improvement's tag
    alone would also find the runs of an earlier test's improvement with the same id.
    """
    runs = await flow_runs(tags=FlowRunFilterTags(all_=[f"IMP-{improvement_id}"]))
    return sorted((r for r in runs if r.created and r.created >= since), key=lambda r: r.created)


async def wait_for_runs(
    improvement_id: int, since: datetime, flow: str, count: int = 1
) -> list[FlowRun]:
    """The improvement's flow runs, once `count` runs of `flow` (e.g. "advance") have finished."""
    latest: list[FlowRun] = []

    async def finished() -> list[FlowRun] | None:
        nonlocal latest
        latest = await runs_for(improvement_id, since)
        done = [
            r for r in latest if r.name.startswith(f"{flow} ·") and r.state and r.state.is_final()
        ]
        return latest if len(done) >= count else None

    return await eventually(
        finished,
        f"{count} finished {flow} run(s) of IMP-{improvement_id}",
        lambda: "\n".join(f"  {r.name}: {r.state_name}" for r in latest) or "  no runs",
    )


def of_flow(runs: list[FlowRun], flow: str) -> list[FlowRun]:
    """The runs of one flow (e.g. "route") among an improvement's runs.

    A test counts the runs of the flow it is about, not all of them: Prefect's events client
    sends again the events the server has not yet confirmed (up to 30 s of them) whenever its
    connection is renewed, so a late copy of an earlier test's event for its own IMP-1 can start
    a run tagged IMP-1 here. That run finds nothing to do, which `assert_none_failed` and the
    test's transitions show.
    """
    return [r for r in runs if r.name.startswith(f"{flow} ·")]


def assert_none_failed(runs: list[FlowRun]) -> None:
    assert all(r.state_type == StateType.COMPLETED for r in runs), [
        (r.name, r.state_name) for r in runs
    ]


def _final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()


async def wait_for_quiet() -> None:
    """Until no flow run is due or running (the sweep's next scheduled run is minutes away)."""
    deadline = time.monotonic() + DEADLINE
    busy: list[FlowRun] = []
    while time.monotonic() < deadline:
        busy = [
            run
            for run in await flow_runs(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED))
            )
            if run.state_type != StateType.SCHEDULED
            or (run.expected_start_time and run.expected_start_time.timestamp() < time.time() + 30)
        ]
        if not busy:
            return
        await asyncio.sleep(0.3)
    names = ", ".join(f"{r.name} ({r.state_name})" for r in busy)
    raise AssertionError(f"flow runs still busy after {DEADLINE:.0f} s: {names}")


async def run_sweep() -> FlowRun:
    """Run the `sweep` deployment now, as an operator could from the Prefect UI, and wait for it.

    Sweeps run one at a time: one the schedule started at the same moment cancels ours, and then
    that one is the sweep that ran.
    """
    async with get_client() as client:  # run_deployment leaves a client of its own open
        run = await arun_deployment(
            "sweep/sweep", timeout=DEADLINE, poll_interval=0.5, client=client
        )
    assert run.state is not None and run.state.is_final(), f"sweep still {run.state_name}"
    if run.state.is_cancelled():
        await wait_for_quiet()
        return run
    assert run.state.is_completed(), f"sweep {run.state_name}: {run.state.message}"
    return run


def snapshot(session: Session, improvement_id: int) -> tuple[object, ...]:
    """Everything a click could change about an improvement, to compare before and after."""
    session.expire_all()
    improvement = session.get(Improvement, improvement_id)
    assert improvement is not None
    where = {"improvement_id": improvement_id}
    approvals = session.exec(select(ApprovalRequest).filter_by(**where)).all()
    actions = session.exec(select(ActionItem).filter_by(**where)).all()
    return (
        improvement.status,
        improvement.updated_at,
        [(a.id, a.status, a.decided_at, a.token_hash, a.comment) for a in approvals],
        [(a.id, a.status, a.completed_at, a.token_hash) for a in actions],
        len(session.exec(select(Transition).filter_by(**where)).all()),
        len(session.exec(select(OutboxEmail).filter_by(**where)).all()),
    )


def browser_of(stack: Stack, colleague_id: int) -> httpx.Client:
    """The colleague's browser, signed in as following their emailed sign-in link leaves it."""
    with session_scope() as session:
        token = start_session(session=session, colleague_id=colleague_id, via="email")
    client = httpx.Client(base_url=stack.web_url, timeout=30.0)
    client.cookies.set(auth.COOKIE, auth.sign_cookie(token))
    return client
