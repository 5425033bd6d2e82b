"""The fault suite: N improvements through a real `improve up` while its parts are killed.

`improve up --no-demo` runs as a process of its own (free ports, a data directory of its own,
the test database), sending to an SMTP server in this process. People are played by a loop that
reads each new email and follows its link: approvers approve, action owners post a measured
result. Meanwhile, at seeded random moments, the web app, the flows runner and the Prefect server
are killed with SIGKILL, and the SMTP server is stopped for a while. Afterwards, as an operator
could, the `sweep` deployment is started every SWEEP_EVERY seconds until every improvement is
completed and every email sent, or the deadline passes. Then one table says what was lost.

    python -m tests.faults.run --improvements 200 --seed 1
"""

import argparse
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if "tests.conftest" not in sys.modules:  # run as a program: the test environment, as pytest has it
    import tests.conftest  # noqa: F401

import httpx
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from improve.stack import free_port
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Improvement,
    OutboxEmail,
    OutboxStatus,
    Status,
    Transition,
)
from models.db import get_engine, session_scope
from tasks.access import create_api_token
from tests.factories import make_approver, make_colleague
from tests.smtpd import Received, SmtpServer
from tests.up import Up, start_up

RETRY_AFTER = 2.0  # seconds before a request that found the web app down is tried again
GIVE_UP_AFTER = 180.0  # seconds a person keeps retrying one link
SWEEP_EVERY = 20.0  # seconds between the sweeps an operator starts while things settle
COMPONENTS = {  # what to kill: a part of the stack, by a piece of its command line
    "web": "web.app:app",
    "flows": "improve.stack serve",
    "prefect-server": "prefect server start",
}
LINK = re.compile(r"https?://[^\s/]+/(approvals|actions)/(\d+)/[A-Za-z0-9_\-]+")


@dataclass
class Plan:
    improvements: int = 20
    seed: int = 1
    kills: int = 1  # of each component
    outage: float = 20.0  # seconds the SMTP server is down, once per `kills`
    window: float = 60.0  # seconds after the first submission within which the faults happen
    submit_over: float = 20.0  # seconds over which the submissions are spread
    settle_deadline: float = 240.0  # seconds after the last fault for everything to settle


@dataclass
class Result:
    improvements: int
    right: int
    decisions_lost: int
    results_lost: int
    delivered_twice: int
    never_delivered: int
    history_gaps: int
    settle_seconds: float | None
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        return (
            self.right == self.improvements
            and self.decisions_lost == self.results_lost == 0
            and self.delivered_twice == self.never_delivered == self.history_gaps == 0
        )

    def table(self) -> Table:
        table = Table(title=f"Faults: {len(self.faults)} injected", show_lines=False)
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_column("goal", justify="right")
        settle = "never" if self.settle_seconds is None else f"{self.settle_seconds:.0f} s"
        for name, value, goal in [
            ("improvements in the right final state", f"{self.right}/{self.improvements}",
             f"{self.improvements}/{self.improvements}"),
            ("decisions lost", self.decisions_lost, 0),
            ("action results lost", self.results_lost, 0),
            ("emails delivered twice (Message-ID)", self.delivered_twice, 0),
            ("emails never delivered", self.never_delivered, 0),
            ("history gaps", self.history_gaps, 0),
            ("last restart until settled", settle, ""),
        ]:  # fmt: skip
            table.add_row(name, str(value), str(goal))
        return table


# --- `improve up`, and its parts --------------------------------------------------------------


# --- people, following the links in their email -----------------------------------------------


@dataclass
class Click:
    """One link a person means to follow until they get an answer."""

    kind: str  # approvals or actions
    item_id: int
    url: str
    first: float
    due: float
    tries: int = 0
    unanswered: int = 0  # tries that got no answer (the web app was down)


@dataclass
class People:
    web: httpx.Client
    rng: random.Random
    clicks: list[Click] = field(default_factory=list)
    seen_links: set[str] = field(default_factory=set)
    read: int = 0
    decided: set[int] = field(default_factory=set)  # approvals whose POST answered 200
    acted: dict[int, float] = field(default_factory=dict)  # action id: saving posted, answered 200
    refused_after_retry: list[tuple[str, int]] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)

    def read_mail(self, received: list[Received]) -> None:
        new, self.read = received[self.read :], len(received)
        for message in new:
            part = message.message.get_body(preferencelist=("plain",))
            body = str(part.get_content()) if part is not None else ""
            for match in LINK.finditer(body):
                if match[0] in self.seen_links:
                    continue
                self.seen_links.add(match[0])
                now = time.monotonic()
                self.clicks.append(Click(match[1], int(match[2]), match[0], now, now))

    def follow_due(self) -> None:
        now = time.monotonic()
        for click in [c for c in self.clicks if c.due <= now]:
            if self.follow(click):
                self.clicks.remove(click)
            elif time.monotonic() - click.first > GIVE_UP_AFTER:
                self.gave_up.append(click.url)
                self.clicks.remove(click)
            else:
                click.due = time.monotonic() + RETRY_AFTER

    def follow(self, click: Click) -> bool:
        """Open the link, then decide or act; False when the web app did not answer."""
        click.tries += 1
        try:
            page = self.web.get(click.url)
            if page.status_code == 200:
                if click.kind == "approvals":
                    answer = self.web.post(click.url, data={"decision": "approve", "comment": "Go"})
                else:
                    saving = float(self.rng.randint(100, 999))
                    answer = self.web.post(
                        click.url,
                        data={"measured_saving": f"{saving:.0f}", "note": "measured"},
                    )
            else:
                answer = page
        except httpx.TransportError:
            click.unanswered += 1
            return False
        if answer.status_code >= 500:
            click.unanswered += 1
            return False
        if answer.status_code == 200 and answer.request.method == "POST":
            if click.kind == "approvals":
                self.decided.add(click.item_id)
            else:
                self.acted[click.item_id] = saving
        elif click.unanswered:
            # Used, or replaced by a reminder: fine after a retry; whether it counted is checked
            # against the database at the end.
            self.refused_after_retry.append((click.kind, click.item_id))
        return True


@dataclass
class Submitter:
    email: str
    token: str


def seed_people(count: int) -> list[Submitter]:
    """Submitters with API tokens of their own, and two approvers for the resource category."""
    submitters = []
    with session_scope() as session:
        make_approver(session, "Alex Approver", category=Category.resource, limit=5_000)
        make_approver(session, "Bea Approver", category=Category.resource, limit=5_000)
        for n in range(count):
            colleague = make_colleague(session, f"Sam Submitter{n}")
            _, token = create_api_token(session=session, email=colleague.email, name="faults")
            submitters.append(Submitter(colleague.email, token))
    return submitters


@dataclass
class Submission:
    n: int
    submitter: Submitter
    due: float
    improvement_id: int | None = None


def submit(web: httpx.Client, submission: Submission, seed: int) -> bool:
    body = {
        "title": f"Paperless statements, batch {submission.n}",
        "description": "Send statements by email to customers who agreed to hear from us.",
        "category": "resource",
        "estimated_cost": 1_200,
        "annual_saving": 4_000,
        "kg_co2e": 90,
        "sheets_paper": 24_000,
    }
    headers = {
        "Authorization": f"Bearer {submission.submitter.token}",
        "Idempotency-Key": f"faults-{seed}-{submission.n}",
    }
    try:
        response = web.post("/api/improvements", json=body, headers=headers)
    except httpx.TransportError:
        return False
    if response.status_code >= 500:
        return False
    if response.status_code not in (200, 201):
        raise RuntimeError(f"submission {submission.n} refused: {response.text}")
    submission.improvement_id = int(response.json()["id"])
    return True


# --- faults -----------------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds after the start
    what: str  # web, flows, prefect, smtp-stop, smtp-start
    done: bool = False


def schedule(plan: Plan, rng: random.Random) -> list[Fault]:
    """Each component killed `kills` times and the SMTP server down `kills` times, at random."""
    faults = []
    for name in COMPONENTS:
        faults += [Fault(rng.uniform(5, plan.window), name) for _ in range(plan.kills)]
    # Outages one after another, each starting within its share of the window.
    share = plan.window / plan.kills
    for k in range(plan.kills):
        start = k * share + rng.uniform(3, max(3.0, share - plan.outage))
        faults += [Fault(start, "smtp-stop"), Fault(start + plan.outage, "smtp-start")]
    return sorted(faults, key=lambda f: f.at)


def inject(fault: Fault, up: Up, smtp: SmtpServer, log: list[str], began: float) -> bool:
    """Carry out a fault; False when its victim is not running yet (try again shortly)."""
    if fault.what == "smtp-stop":
        smtp.stop()
    elif fault.what == "smtp-start":
        smtp.start()
    else:
        pid = up.child(COMPONENTS[fault.what])
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
    log.append(f"{time.monotonic() - began:6.1f} s  {fault.what}")
    return True


def restarted(up: Up, kills: Counter[str]) -> bool:
    """Whether every killed component has been started again as often as it was killed."""
    console = up.console()
    return all(console.count(f"{name} restarted") >= n for name, n in kills.items())


def start_sweep(up: Up, last: Any) -> Any:
    """Start a sweep now, as an operator could from the Prefect UI, unless the last one started
    here has not finished yet (sweeps run one at a time: more would only queue); the one started.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: up.api_url}):
            if last is not None:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(last).state
                if state is not None and not state.is_final():
                    return last
            return run_deployment("sweep/sweep", timeout=0).id
    except Exception:  # noqa: BLE001 - the server may be restarting: the next try will do
        return last


# --- what is left -----------------------------------------------------------------------------


def settled(ids: list[int]) -> bool:
    with Session(get_engine()) as session:
        statuses = session.exec(select(Improvement.status).where(Improvement.id.in_(ids)))  # type: ignore[union-attr]
        if any(status != Status.completed for status in statuses):
            return False
        unsent = session.exec(
            select(OutboxEmail.id).where(
                OutboxEmail.status.in_([OutboxStatus.queued, OutboxStatus.sending])  # type: ignore[attr-defined]
            )
        ).first()
        return unsent is None


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>")


def measure(
    ids: list[int], people: People, smtp: SmtpServer, settle_seconds: float | None
) -> Result:
    notes: list[str] = []
    with Session(get_engine()) as session:
        improvements = {
            i.id: i
            for i in session.exec(select(Improvement).where(Improvement.id.in_(ids)))  # type: ignore[union-attr]
        }
        right = sum(1 for i in improvements.values() if i.status == Status.completed)
        approvals = {a.id: a for a in session.exec(select(ApprovalRequest))}
        actions = {a.id: a for a in session.exec(select(ActionItem))}
        decisions_lost = [
            a for a in people.decided if approvals[a].status != ApprovalStatus.approved
        ]
        results_lost = [
            a
            for a, saving in people.acted.items()
            if actions[a].status != ActionStatus.done or actions[a].measured_saving != saving
        ]
        outbox = session.exec(select(OutboxEmail)).all()
        gaps = 0
        for improvement in improvements.values():
            chain = session.exec(
                select(Transition)
                .where(Transition.improvement_id == improvement.id)
                .order_by(Transition.id)  # type: ignore[arg-type]
            ).all()
            previous = None
            for transition in chain:
                if transition.from_status != previous:
                    gaps += 1
                    notes.append(f"IMP-{improvement.id}: {transition.from_status} after {previous}")
                previous = transition.to_status
            if previous != improvement.status:
                gaps += 1
                notes.append(
                    f"IMP-{improvement.id}: history ends {previous}, is {improvement.status}"
                )
    at_sink = Counter(_bare(m.message_id) for m in list(smtp.received))
    twice = [mid for mid, n in at_sink.items() if n > 1]
    unsent = [e for e in outbox if e.status not in (OutboxStatus.sent, OutboxStatus.skipped)]
    lost_in_flight = [
        e for e in outbox if e.status == OutboxStatus.sent and _bare(e.message_id) not in at_sink
    ]
    for e in unsent:
        notes.append(f"outbox {e.id} {e.template} to {e.recipient}: {e.status} {e.last_error[:80]}")
    for e in lost_in_flight:
        notes.append(f"outbox {e.id} {e.template} marked sent, never at the sink")
    for mid in twice:
        notes.append(f"delivered {at_sink[mid]} times: {mid}")
    for i in improvements.values():
        if i.status != Status.completed:
            notes.append(f"IMP-{i.id} left {i.status}")
    notes += [f"decision lost: approval {a}" for a in decisions_lost]
    notes += [f"result lost: action {a}" for a in results_lost]
    notes += [f"gave up on {url}" for url in people.gave_up]
    for kind, item in people.refused_after_retry:
        recorded = (
            approvals[item].status == ApprovalStatus.approved
            if kind == "approvals"
            else actions[item].status == ActionStatus.done
        )
        notes.append(f"410 after a retry on {kind} {item}; recorded: {recorded}")
    return Result(
        improvements=len(ids),
        right=right,
        decisions_lost=len(decisions_lost),
        results_lost=len(results_lost),
        delivered_twice=len(twice),
        never_delivered=len(unsent) + len(lost_in_flight),
        history_gaps=gaps,
        settle_seconds=settle_seconds,
        notes=notes,
    )


# --- the run ----------------------------------------------------------------------------------


def run(plan: Plan, data: Path, console: Console | None = None) -> Result:
    """Drive `plan.improvements` improvements through a fresh `improve up`, with faults."""
    console = console or Console()
    rng = random.Random(plan.seed)
    smtp = SmtpServer(free_port())
    smtp.start()
    submitters = seed_people(min(plan.improvements, 10))
    up = start_up(data, relay_port=smtp.port, seconds=120.0)
    log: list[str] = []
    try:
        with httpx.Client(base_url=up.web_url, timeout=15.0) as web:
            people = People(web, random.Random(plan.seed + 1))
            began = time.monotonic()
            submissions = [
                Submission(
                    n,
                    submitters[n % len(submitters)],
                    began + plan.submit_over * n / plan.improvements,
                )
                for n in range(plan.improvements)
            ]
            faults = schedule(plan, rng)
            kills: Counter[str] = Counter()
            last_fault = began
            last_sweep, sweep_run = 0.0, None
            settle_seconds: float | None = None
            while True:
                now = time.monotonic()
                for fault in faults:
                    if not fault.done and began + fault.at <= now:
                        fault.done = inject(fault, up, smtp, log, began)
                        if fault.done:
                            last_fault = time.monotonic()
                            if fault.what in COMPONENTS:
                                kills[fault.what] += 1
                for s in submissions:
                    if s.improvement_id is None and s.due <= now and not submit(web, s, plan.seed):
                        s.due = time.monotonic() + RETRY_AFTER
                people.read_mail(smtp.received)
                people.follow_due()
                if up.process.poll() is not None:
                    raise RuntimeError(f"improve up stopped:\n{up.console()[-3000:]}")
                faults_over = all(f.done for f in faults) and restarted(up, kills)
                submitted = all(s.improvement_id is not None for s in submissions)
                if faults_over and submitted:
                    ids = [s.improvement_id for s in submissions if s.improvement_id is not None]
                    if not people.clicks and settled(ids):
                        settle_seconds = time.monotonic() - last_fault
                        break
                    if time.monotonic() - last_sweep > SWEEP_EVERY:
                        sweep_run = start_sweep(up, sweep_run)
                        last_sweep = time.monotonic()
                    if time.monotonic() - last_fault > plan.settle_deadline:
                        break
                elif time.monotonic() - began > plan.window + plan.settle_deadline:
                    raise RuntimeError(
                        f"faults not over: {[f for f in faults if not f.done]}, "
                        f"kills {dict(kills)}\n{up.console()[-3000:]}"
                    )
                time.sleep(0.2)
            ids = [s.improvement_id for s in submissions if s.improvement_id is not None]
            time.sleep(2)  # an email sent as we settled may still be on its way
            result = measure(ids, people, smtp, settle_seconds)
            result.faults = log
    finally:
        up.stop()
        smtp.stop()
    console.print("Faults injected (seconds after the first submission):")
    for line in log:
        console.print(f"  {line}", highlight=False)
    for note in result.notes[:60]:
        console.print(f"  {note}", highlight=False, markup=False)
    console.print(result.table())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--improvements", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=3, help="times each part is killed")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds SMTP is down each time")
    # The stack moves about 0.1 improvement a second on a 2-core machine (six flow runs each, the
    # Prefect server creating about 0.6 runs a second from events): submissions are spread so
    # that they arrive no faster, and the faults fall while the work is going on.
    parser.add_argument("--window", type=float, default=1800.0, help="seconds the faults span")
    parser.add_argument("--submit-over", type=float, help="seconds the submissions are spread over")
    parser.add_argument("--settle", type=float, default=900.0, help="seconds allowed to settle")
    args = parser.parse_args()
    from sqlalchemy import MetaData

    from models import db

    everything = MetaData()  # from nothing, as tests/conftest.py does
    everything.reflect(db.get_engine())
    everything.drop_all(db.get_engine())
    db.init_db()
    plan = Plan(
        improvements=args.improvements,
        seed=args.seed,
        kills=args.kills,
        outage=args.outage,
        window=args.window,
        submit_over=args.submit_over or args.window * 0.9,
        settle_deadline=args.settle,
    )
    result = run(plan, Path(tempfile.mkdtemp(prefix="improve-faults-")))
    raise SystemExit(0 if result.goal_met else 1)


if __name__ == "__main__":
    main()
