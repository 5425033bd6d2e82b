"""`improve up` supervises: it starts a dead part again, and nothing it started outlives it.

Each test runs the real `improve up --no-demo` of its own (tests/up.py), kills parts of it as an
operating system or an operator would, and looks at what is left: processes in /proc, ports,
flow runs in its Prefect server, emails in its sink.
"""

import mailbox
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from sqlmodel import Session, select

from models import Category, Improvement, Status
from tests.factories import make_approver, make_colleague, make_improvement
from tests.up import (
    Up,
    descendants_of,
    listening,
    process_state,
    start_up,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
DEADLINE = 90.0  # seconds: `improve up` starts in about 20 on a busy machine
UNFINISHED = {StateType.PENDING, StateType.RUNNING}
IMP = re.compile(r"IMP-(\d+)\b")


# --- Prefect, seen from the test -------------------------------------------------------------


def runs(client: SyncPrefectClient, ids: list[UUID] | None = None) -> list[FlowRun]:
    where = FlowRunFilter(id=FlowRunFilterId(any_=ids)) if ids is not None else None
    return client.read_flow_runs(flow_run_filter=where)


def start_run(client: SyncPrefectClient, deployment: str, **parameters: Any) -> FlowRun:
    found = client.read_deployment_by_name(f"{deployment}/{deployment}")
    return client.create_flow_run_from_deployment(found.id, parameters=parameters)


# --- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One `improve up` for the tests that kill one of its parts and watch it come back."""
    up = start_up(tmp_path_factory.mktemp("up"))
    yield up
    up.stop()


def test_a_killed_web_app_is_started_again_and_the_console_says_so(up: Up) -> None:
    web = up.child("web.app:app")
    assert web is not None
    os.kill(web, signal.SIGKILL)

    up.wait_for_console("web stopped (exit -9); restarting in 1 s")
    up.wait_for_console("web restarted")
    assert httpx.get(f"http://127.0.0.1:{up.web_port}/healthz").json() == {"status": "ok"}
    assert up.child("web.app:app") != web
    log = (up.data / "logs" / "web.log").read_text()
    assert "web stopped (exit -9); starting it again" in log


def test_a_killed_runner_is_started_again_and_the_runs_it_left_are_run_again(
    up: Up, session: Session
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    ids = [make_improvement(session, sam, estimated_cost=1_200).id for _ in range(4)]
    with up.client() as client:
        started = [start_run(client, "route-improvement", improvement_id=i).id for i in ids]
        in_flight: list[FlowRun] = []

        def picked_up() -> bool:
            nonlocal in_flight
            in_flight = [r for r in runs(client, started) if r.state_type in UNFINISHED]
            return bool(in_flight)

        wait_until(picked_up, "the runner to pick up a run", lambda: "")
        runner = up.child("improve.stack serve")
        assert runner is not None
        os.kill(runner, signal.SIGKILL)  # as the OOM killer would

        up.wait_for_console("flows stopped (exit -9); restarting in 1 s")
        up.wait_for_console("flows restarted")
        assert "marked crashed and started again" in up.console()
        # Every run the dead runner had picked up has ended: none is left pending for good.
        left = runs(client, [r.id for r in in_flight])
        assert all(r.state is not None and r.state.is_final() for r in left), left
        crashed = [r for r in left if r.state_type == StateType.CRASHED]
        assert crashed, [(r.name, r.state_name) for r in left]
        assert all(r.state and "runner" in (r.state.message or "") for r in crashed)

    # ... and their work was done again: every improvement routed, each email sent once.
    def routed() -> bool:
        session.expire_all()
        statuses = session.exec(select(Improvement.status).where(Improvement.id.in_(ids)))  # type: ignore[union-attr]
        return all(status == Status.awaiting_approval for status in statuses)

    wait_until(routed, "every improvement to be routed", up.console)

    def asked() -> Counter[int]:
        """How many approval requests Alex was sent for each improvement."""
        return Counter(
            int(found[1])
            for message in mailbox.Maildir(up.data / "mailsink", create=False)
            if message["Delivered-To"] == alex.email and (found := IMP.search(message["Subject"]))
        )

    wait_until(lambda: set(asked()) == set(ids), "an email for each improvement", str(asked))
    with up.client() as client:
        wait_until(
            lambda: not [r for r in runs(client) if r.state_type in UNFINISHED],
            "no flow run to be running",
            lambda: str([(r.name, r.state_name) for r in runs(client)]),
        )
    assert asked() == dict.fromkeys(ids, 1)


def test_nothing_outlives_improve_up_killed_with_kill_9(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    left: dict[int, str] = {}
    try:
        with up.client() as client:
            start_run(client, "sweep")
        # A flow run is a fork of the runner's forkserver: a second process with its command line.
        wait_until(
            lambda: " ".join(descendants_of(up.process.pid).values()).count("forkserver") >= 2,
            "a flow run's process",
            lambda: str(descendants_of(up.process.pid)),
        )
        left = descendants_of(up.process.pid)
        assert len(left) >= 5, left  # server, runner, forkserver, a flow run, web app

        up.process.kill()
        up.process.wait()

        wait_until(
            lambda: (
                not any(process_state(pid) for pid in left) and not any(map(listening, up.ports))
            ),
            "every process improve up started to end, and its ports to be free",
            lambda: "\n".join(f"{pid} {cmd}" for pid, cmd in left.items() if process_state(pid)),
            seconds=10,
        )
    finally:
        up.stop()
        for pid in left:
            if process_state(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigint_stops_improve_up_even_started_in_the_background(tmp_path: Path) -> None:
    # A non-interactive shell starts a background job with SIGINT ignored; Python keeps it so.
    up = start_up(tmp_path, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        children = descendants_of(up.process.pid)
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(60) == 0, up.console()
        assert "Stopping…" in up.console() and "Stopped." in up.console()
        assert not [cmd for pid, cmd in children.items() if process_state(pid)]
        assert not any(map(listening, up.ports))
    finally:
        up.stop()
