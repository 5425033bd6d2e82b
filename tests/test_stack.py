"""`improve up` supervises: it starts a dead part again, and nothing it started outlives it.

Each test runs the real `improve up --no-demo` as a process of its own, on free ports and with a
data directory of its own (its Prefect server, logs and mail sink), against the test database;
then kills parts of it as an operating system or an operator would, and looks at what is left:
processes in /proc, ports, flow runs in its Prefect server, emails in its sink.
"""

import mailbox
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import Session, select

from improve.stack import REPO, free_port
from models import Category, Improvement, Status
from tests.factories import make_approver, make_colleague, make_improvement

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
DEADLINE = 90.0  # seconds: `improve up` starts in about 20 on a busy machine
UNFINISHED = {StateType.PENDING, StateType.RUNNING}
IMP = re.compile(r"IMP-(\d+)\b")


# --- an `improve up` of its own, and what /proc says about it ----------------------------------


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    data: Path
    web_port: int
    prefect_port: int
    smtp_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def ports(self) -> list[int]:
        return [self.web_port, self.prefect_port, self.smtp_port]

    def console(self) -> str:
        return (self.data / "console.txt").read_text(errors="replace")

    def wait_for_console(self, line: str) -> None:
        wait_until(lambda: line in self.console(), f"{line!r} on the console", self.console)

    def child(self, command: str) -> int:
        """The pid of the child of `improve up` whose command line contains `command`."""
        return next(pid for pid, cmd in children_of(self.process.pid).items() if command in cmd)

    def client(self) -> Any:
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            return get_client(sync_client=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_up(data: Path, preexec: Callable[[], object] | None = None) -> Up:
    """`improve up --no-demo` on free ports, once it says it is running."""
    data.mkdir(parents=True, exist_ok=True)
    web_port, prefect_port, smtp_port = free_port(), free_port(), free_port()
    env = {**os.environ, "IMPROVE_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    with (data / "console.txt").open("wb") as console:
        process = subprocess.Popen(
            [sys.executable, "-m", "improve.cli", "up", "--no-demo",
             "--web-port", str(web_port), "--prefect-port", str(prefect_port),
             "--smtp-port", str(smtp_port)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=console,
            stderr=subprocess.STDOUT, preexec_fn=preexec,
        )  # fmt: skip
    up = Up(process, data, web_port, prefect_port, smtp_port)
    try:
        wait_until(
            lambda: "Improve is running." in up.console() or process.poll() is not None,
            "improve up to start",
            up.console,
        )
        assert process.poll() is None, f"improve up exited {process.returncode}:\n{up.console()}"
    except BaseException:
        up.stop()
        raise
    return up


def wait_until(
    check: Callable[[], object], what: str, so_far: Callable[[], str], seconds: float = DEADLINE
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds:.0f} s for {what}; so far:\n{so_far()}")


def _stat(pid: int) -> tuple[str, int] | None:
    """A live process's state letter and parent pid; None once it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else (fields[0], int(fields[1]))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children_of(parent: int) -> dict[int, str]:
    """The live children of `parent`, with their command lines."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {pid: _cmdline(pid) for pid in pids if (stat := _stat(pid)) and stat[1] == parent}


def descendants_of(parent: int) -> dict[int, str]:
    found: dict[int, str] = {}
    generation = children_of(parent)
    while generation:
        found.update(generation)
        generation = {pid: cmd for child in generation for pid, cmd in children_of(child).items()}
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


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
        os.kill(up.child("improve.stack serve"), signal.SIGKILL)  # as the OOM killer would

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
            lambda: not any(_stat(pid) for pid in left) and not any(map(listening, up.ports)),
            "every process improve up started to end, and its ports to be free",
            lambda: "\n".join(f"{pid} {cmd}" for pid, cmd in left.items() if _stat(pid)),
            seconds=10,
        )
    finally:
        up.stop()
        for pid in left:
            if _stat(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigint_stops_improve_up_even_started_in_the_background(tmp_path: Path) -> None:
    # A non-interactive shell starts a background job with SIGINT ignored; Python keeps it so.
    up = start_up(tmp_path, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        children = descendants_of(up.process.pid)
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(60) == 0, up.console()
        assert "Stopping…" in up.console() and "Stopped." in up.console()
        assert not [cmd for pid, cmd in children.items() if _stat(pid)]
        assert not any(map(listening, up.ports))
    finally:
        up.stop()
