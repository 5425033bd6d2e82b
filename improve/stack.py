"""The stack `improve up` runs on one machine: Prefect server, served flows, web app, mail sink.

`Stack` starts and stops the processes; `Supervisor` starts again one that died; `up` adds the
database, demo data, the sink and the console. The end-to-end tests and the benchmarks use the
same `Stack`, so what they exercise is what `improve up` runs. The flows are served from
prefect.yaml by `serve_deployments`, in a child process started as `python -m improve.stack serve`.

No child outlives the process that started it, even one killed with `kill -9`: on Linux the web
app and the Prefect server are killed by the kernel when their parent dies (PR_SET_PDEATHSIG), and
the flows process watches its parent and then kills its own process group, which holds every flow
run it started.
"""

import argparse
import asyncio
import ctypes
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from pydantic import TypeAdapter

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "prefect.yaml"
STOP_TIMEOUT = 10.0  # seconds a child gets to stop on SIGTERM before it is killed

# A child that dies is started again after 1, 2, 4 … seconds, at most 30; one that had stayed up
# for a minute starts again from 1 s. Five deaths of one child within five minutes stop it all.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
GIVE_UP_AFTER = 5
GIVE_UP_WINDOW = 300.0


# --- prefect.yaml, served --------------------------------------------------------------------


def deployment_specs(prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The `deployments:` of prefect.yaml, as written."""
    return list(yaml.safe_load(prefect_file.read_text())["deployments"])


def deployment_options(spec: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """One deployment of prefect.yaml: its flow, and the options `to_deployment` takes.

    Triggers, schedules and concurrency limits are read the way `prefect deploy` reads them;
    the work pool is left out, because a served deployment runs in the serving process's runner.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events import DeploymentTriggerTypes
    from prefect.schedules import Cron, Interval

    from improve.settings import settings

    triggers = TypeAdapter(DeploymentTriggerTypes)
    path, _, attribute = spec["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    limit = spec.get("concurrency_limit")
    return getattr(module, attribute), {
        "name": spec["name"],
        "description": spec.get("description"),
        "tags": spec.get("tags"),
        "parameters": spec.get("parameters"),
        "concurrency_limit": ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
        "triggers": [
            triggers.validate_python({"name": f"{spec['name']}__automation_{i}", **trigger})
            for i, trigger in enumerate(spec.get("triggers") or [], start=1)
        ],
        "schedules": [
            Interval(timedelta(seconds=s["interval"]))
            if "interval" in s
            # A daily time means the organisation's, unless the file names a zone.
            else Cron(s["cron"], timezone=s.get("timezone") or settings.timezone)
            for s in spec.get("schedules") or []
        ],
    }


def load_deployments(prefect_file: Path = PREFECT_FILE) -> list[Any]:
    """Each deployment of prefect.yaml as a RunnerDeployment, as `prefect deploy` would make it.

    Run from the repository root, so the entrypoints match the file's.
    """
    deployments = []
    for spec in deployment_specs(prefect_file):
        flow, options = deployment_options(spec)
        deployment = flow.to_deployment(**options)
        if deployment.entrypoint != spec["entrypoint"]:
            raise RuntimeError(
                f"{spec['name']}: entrypoint {deployment.entrypoint!r} is not prefect.yaml's "
                f"{spec['entrypoint']!r}; serve from the repository root ({REPO})"
            )
        deployments.append(deployment)
    return deployments


def serve_deployments(prefect_file: Path = PREFECT_FILE) -> None:
    """Serve every deployment of prefect.yaml until stopped, each run a fork (`fork_flow_runs`).

    The flows are given to the runner as flows, not as entrypoints, so that it starts a run from
    the flow object it holds instead of a new `python -m prefect.engine`.
    """
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    load_deployments(prefect_file)  # checks every entrypoint against the file
    specs = deployment_specs(prefect_file)
    fork_flow_runs({spec["entrypoint"].partition(":")[0] for spec in specs})
    runner = Runner(pause_on_shutdown=True)
    for spec in specs:
        flow, options = deployment_options(spec)
        runner.add_flow(flow, **options)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


def fork_flow_runs(flow_files: set[str]) -> None:
    """Start each flow run as a fork of a process that has imported Prefect and the flows once.

    Prefect's runner starts every run in a fresh interpreter (multiprocessing's "spawn"), which
    imports Prefect and Improve again: about 3.3 s of CPU per run on a 2-core machine, most of
    what a run costs, and what limits how many improvements the stack moves a minute. A
    forkserver imports them once, stays single-threaded, and forks a clean copy per run, so the
    run starts at once. The runner's module `prefect.flow_engine` asks multiprocessing for the
    spawn context by name; it is given the forkserver instead (same Process interface).
    """
    import multiprocessing

    import prefect.flow_engine

    modules = sorted(f.removesuffix(".py").replace("/", ".") for f in flow_files)
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["prefect.flow_engine", *modules])

    class Forkserver:
        def __getattr__(self, name: str) -> Any:
            return getattr(multiprocessing, name)

        def get_context(self, method: str | None = None) -> Any:
            return forkserver

    prefect.flow_engine.multiprocessing = Forkserver()  # type: ignore[assignment]


def end_with(parent: int, poll: float = 0.2) -> None:
    """Kill this process's group, flow runs and all, as soon as `parent` is no longer its parent.

    The runner starts each flow run as a process of its own, in the runner's process group; if the
    runner were simply killed with its parent, its runs would carry on, orphaned. A thread that
    polls needs no help from the runner's signal handling, and works the same on macOS.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


# --- the processes ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dies_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel to send `sig` to the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None  # no PR_SET_PDEATHSIG: on macOS only the flows process ends with its parent
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the child between fork and exec; the setting survives the exec. The parent
        # may have died before it was made: then nothing would ever send the signal.
        prctl(1, int(sig))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def note(self, line: str) -> None:
        """Add a line of our own to the child's log, so the log says what happened to it."""
        with self.log.open("a") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} improve.stack: {line}\n")

    def exit_code(self) -> int | None:
        """None while the child runs; once it has exited, its exit code, after what is left of
        its process group (the flow runs of a dead runner) has been killed."""
        if not self._exited():
            return None
        self._signal_group(signal.SIGKILL)
        return self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the child's whole process group (its flow runs too); kill what lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self._exited():
                break
            self._signal_group(sig)
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.exit_code()

    def _exited(self) -> bool:
        """Whether the child has exited, without reaping it: until it is reaped its pid, which is
        its process group's id, cannot be reused, so the group can still be signalled safely."""
        if self.process.returncode is not None:
            return True
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.process.pid, flags) is not None
        except ChildProcessError:
            return True

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process.returncode is not None:
            return  # reaped: the group's id may belong to someone else by now
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class StackFailed(RuntimeError):
    """A part of the stack did not start, with the end of its log."""


class NoAnswer(StackFailed):
    """A part of the stack runs, but did not answer in time."""


@dataclass
class Stack:
    """The Prefect server, the served deployments and the web app, as child processes.

    Children inherit this process's environment (IMPROVE_* settings, so the flows use the same
    database and SMTP server), plus PREFECT_API_URL pointing at the server started here. Start,
    restart and stop them from one thread, the main one: the kernel ties a child's life to the
    thread that started it, not to the process.
    """

    prefect_home: Path
    logs: Path
    prefect_port: int = 4200
    web_port: int = 8000
    host: str = "127.0.0.1"
    base_url: str | None = None  # links in emails; defaults to the web app started here
    ui: bool = True
    prefect_file: Path = PREFECT_FILE
    children: list[Child] = field(default_factory=list)
    say: Callable[[str], object] = lambda line: None  # what a person should know, e.g. the console

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true" if self.ui else "false",
            # The runner asks for due runs every 10 s by default: too slow for a person waiting.
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "IMPROVE_BASE_URL": self.base_url or self.web_url,
        }

    def spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Child:
        """Start a child in a process group of its own; it takes the place of one of that name."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                args,
                cwd=REPO,
                env=env or self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
                preexec_fn=preexec,
            )
        child = Child(name, process, log)
        names = [c.name for c in self.children]
        if name in names:
            self.children[names.index(name)] = child
        else:
            self.children.append(child)
        return child

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start(self) -> None:
        """Start everything and return once it answers; on any failure, stop what started."""
        try:
            self.start_prefect()
            self.start_serving()
            self.start_web()
            self.wait_until_served()
        except BaseException:
            self.stop()
            raise

    def start_prefect(self) -> None:
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        del env["PREFECT_API_URL"]
        server = self.spawn(
            "prefect-server",
            [sys.executable, "-m", "prefect", "server", "start",
             "--host", self.host, "--port", str(self.prefect_port)],
            env,
            _dies_with_parent(signal.SIGKILL),
        )  # fmt: skip
        self.wait_for(f"{self.api_url}/health", server)

    def start_serving(self) -> None:
        """Start the runner, once the runs a dead runner left behind are taken care of."""
        self.recover_runs()
        serve = [sys.executable, "-m", "improve.stack", "serve", str(self.prefect_file),
                 "--parent", str(os.getpid())]  # fmt: skip
        self.spawn("flows", serve)

    def start_web(self) -> None:
        web = self.spawn(
            "web",
            [sys.executable, "-m", "uvicorn", "web.app:app",
             "--host", self.host, "--port", str(self.web_port), "--log-level", "warning"],
            preexec=_dies_with_parent(signal.SIGKILL),
        )  # fmt: skip
        self.wait_for(f"{self.web_url}/healthz", web)

    def restart(self, name: str) -> None:
        """Stop what is left of the child `name` and start it again, as `start` did."""
        old = self.child(name)
        old.stop()
        old.note(f"{name} stopped (exit {old.process.returncode}); starting it again")
        starts = {"prefect-server": self.start_prefect, "flows": self.start_serving}
        try:
            starts.get(name, self.start_web)()
        except StackFailed:
            self.child(name).stop()  # a supervisor sees it stopped, and tries again later
            raise

    def recover_runs(self) -> list[str]:
        """Mark crashed the runs a dead runner left PENDING or RUNNING, and run their work again.

        Called before the runner starts, when no runner serves these deployments (this stack's
        server serves only its own runner, and a dead runner's process group has been killed):
        a run still pending or running has no process, and would stay so for good, holding a
        concurrency slot of its deployment. Each becomes Crashed, its subflow runs too, and its
        deployment runs again with the same parameters: every flow is idempotent. Running again
        is quicker than leaving it to the sweep, which waits a minute before it moves anything on.
        Returns the names of the runs started again.
        """
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterParentFlowRunId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.settings import PREFECT_API_URL, temporary_settings
        from prefect.states import Crashed, State

        unfinished = FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING])
        )
        names = [spec["name"] for spec in deployment_specs(self.prefect_file)]
        message = "Its runner, the flows process of improve up, died; the run was started again."
        started: list[str] = []
        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            ours = client.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
            )
            if not ours:
                return started
            deployment = {d.id: d.name for d in ours}
            by_deployment = FlowRunFilterDeploymentId(any_=list(deployment))
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(deployment_id=by_deployment, state=unfinished)
            )
            crashed: list[UUID] = []
            for run in runs:
                # Not forced: a run that finished meanwhile stays finished (terminal states stay).
                state: State[Any] = Crashed(message=message)
                result = client.set_flow_run_state(run.id, state)
                if result.status == SetStateStatus.ACCEPT and run.deployment_id is not None:
                    crashed.append(run.id)
                    client.create_flow_run_from_deployment(
                        run.deployment_id,
                        parameters=run.parameters,
                        idempotency_key=f"improve-up-rerun-{run.id}",
                    )
                    started.append(f"{run.name} ({deployment[run.deployment_id]})")
            parents = crashed
            while parents:  # subflows (the sweep's routes and advances) crashed with their parent
                children = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents),
                        state=unfinished,
                    )
                )
                for run in children:
                    client.set_flow_run_state(run.id, Crashed(message=message))
                parents = [run.id for run in children]
        if started:
            self.say(
                f"{len(started)} flow run(s) left pending or running by a stopped runner marked "
                f"crashed and started again: {', '.join(started)}"
            )
        return started

    def wait_for(self, url: str, child: Child, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(child)
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise NoAnswer(f"{child.name} did not answer {url} in {timeout:.0f} s:\n{child.tail()}")

    def wait_until_served(self, timeout: float = 90.0) -> None:
        """Wait until every deployment and its event triggers are registered with the server.

        An event emitted before its automation exists starts nothing, so nothing may be emitted
        before this returns.
        """
        specs = deployment_specs(self.prefect_file)
        wanted = {spec["name"] for spec in specs}
        automations = {
            f"{spec['name']}__automation_{i}"
            for spec in specs
            for i, _ in enumerate(spec.get("triggers") or [], start=1)
        }
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                found = httpx.post(f"{self.api_url}/deployments/filter", json={}, timeout=5.0)
                made = httpx.post(f"{self.api_url}/automations/filter", json={}, timeout=5.0)
                if wanted <= {d["name"] for d in found.json()} and automations <= {
                    a["name"] for a in made.json()
                }:
                    return
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.3)
        flows = self.child("flows")
        raise StackFailed(f"the deployments were not served in {timeout:.0f} s:\n{flows.tail()}")

    def check_alive(self, *children: Child) -> None:
        """Raise StackFailed if a child (by default, any) has stopped."""
        for child in children or self.children:
            code = child.exit_code()
            if code is not None:
                raise StackFailed(
                    f"{child.name} stopped (exit {code}); the end of {child.log}:\n{child.tail()}"
                )

    def stop(self) -> None:
        """Stop the children, newest first: web app, flows, then the server they talk to."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


class Supervisor:
    """Keeps a started `Stack` running: a child that died is started again after a backoff.

    A dead Prefect server is started first, then the runner, anew: its runs may have lost the
    server mid-way, and a new runner begins by recovering them. A child that keeps dying stops
    everything (StackFailed, with the end of its log).
    """

    def __init__(self, stack: Stack, say: Callable[[str], object]) -> None:
        self.stack = stack
        self.say = say
        self.deaths: dict[str, list[float]] = {}
        self.delays: dict[str, float] = {}
        self.due: dict[str, float] = {}  # child → when it starts again

    def check(self) -> None:
        """Notice the children that died; start again those whose backoff is over."""
        for child in self.stack.children:
            if child.name not in self.due and (code := child.exit_code()) is not None:
                self._died(child, code)
        for name in [child.name for child in self.stack.children]:  # in start order: server first
            if name not in self.due or self.due[name] > time.monotonic():
                continue
            if name != "prefect-server" and "prefect-server" in self.due:
                continue
            del self.due[name]
            self._restart(name)

    def _died(self, child: Child, code: int) -> None:
        now = time.monotonic()
        deaths = [t for t in self.deaths.get(child.name, []) if now - t < GIVE_UP_WINDOW]
        self.deaths[child.name] = [*deaths, now]
        if len(deaths) + 1 >= GIVE_UP_AFTER:
            raise StackFailed(
                f"{child.name} stopped {len(deaths) + 1} times in {GIVE_UP_WINDOW / 60:.0f} "
                f"minutes (exit {code}); the end of {child.log}:\n{child.tail()}"
            )
        last = self.delays.get(child.name)
        up_long = now - child.started >= STABLE_AFTER
        delay = BACKOFF_FIRST if last is None or up_long else min(2 * last, BACKOFF_MAX)
        self.delays[child.name] = delay
        self.due[child.name] = now + delay
        self.say(f"{child.name} stopped (exit {code}); restarting in {delay:.0f} s")

    def _restart(self, name: str) -> None:
        again = [name]
        if name == "prefect-server" and "flows" not in self.due:
            again.append("flows")  # a new runner, which recovers the runs the server lost
        for each in again:
            # On failure the child is left stopped: the next check counts one more death.
            try:
                self.stack.restart(each)
            except NoAnswer as exc:
                self.say(str(exc).splitlines()[0].rstrip(":") + "; stopped it")
                return
            except StackFailed:
                return  # it died starting: the next check says so, with its exit code
            except httpx.HTTPError as exc:  # the Prefect server, while runs were recovered
                self.say(f"{each} not started: the Prefect server failed to answer ({exc})")
                return
            self.say(f"{each} restarted" + ("" if each == name else f" after {name}"))


# --- improve up ------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def up(
    *, demo: bool, web_port: int = 8000, prefect_port: int = 4200, smtp_port: int | None = None
) -> None:
    """Run Improve on this machine until Ctrl-C or SIGTERM, then stop everything cleanly.

    A child that dies is started again (`Supervisor`), and the console says so.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from rich.console import Console

    from improve import events
    from improve.settings import settings
    from improve.sink import start_sink
    from models.db import init_db

    console = Console()

    def say(line: str) -> None:
        console.print(line, soft_wrap=True, markup=False, highlight=False)

    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    init_db()
    submitted = _seed_demo(console) if demo else []

    base_url = settings.base_url
    if web_port != 8000 and base_url == "http://127.0.0.1:8000":
        base_url = f"http://127.0.0.1:{web_port}"
    stack = Stack(
        prefect_home=data / "prefect",
        logs=data / "logs",
        prefect_port=prefect_port,
        web_port=web_port,
        base_url=base_url,
        say=say,
    )
    supervisor = Supervisor(stack, say=say)
    sink = None
    # Both, explicitly: a shell starts a background job with SIGINT ignored, and Python then
    # leaves it ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not settings.smtp_relay_configured:
            smtp_port = smtp_port or settings.smtp_port
            os.environ["IMPROVE_SMTP_HOST"] = settings.smtp_host
            os.environ["IMPROVE_SMTP_PORT"] = str(smtp_port)
            sink = start_sink(host=settings.smtp_host, port=smtp_port, maildir=data / "mailsink")
        with console.status("Starting the Prefect server, the flows and the web app…"):
            stack.start()
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            for improvement_id in submitted:
                events.emit(events.SUBMITTED, improvement_id=improvement_id)
            if demo:
                review_now(stack)
            _print_urls(console, stack, sink is not None, smtp_port)
            if demo:
                _print_demo_sign_in(console, stack)
            while True:
                supervisor.check()
                time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nStopping…")
    except StackFailed as exc:
        console.print(f"[bold red]Improve stopped:[/] {exc}")
        raise SystemExit(1) from exc
    finally:
        stack.stop()
        if sink is not None:
            sink.stop()
    console.print("Stopped.")


def review_now(stack: Stack) -> None:
    """Start a service-review run at once, as the demo's first look at its year of records.

    Its schedule is daily; the demo should show findings within a minute of starting. The review
    raises nothing twice, so a run at every start changes nothing once it has found everything.
    """
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("service-review/service-review")
            client.create_flow_run_from_deployment(deployment.id)
    except Exception as exc:  # the demo still runs; the schedule reviews the records later
        stack.say(f"Could not start the service review now ({exc}); it runs on its schedule")
        return
    stack.say("Started a service review of the service records; its findings show in a minute.")


def _seed_demo(console: Any) -> list[int]:
    """Seed the demo organisation (idempotent); the ids of its improvements awaiting routing."""
    from sqlmodel import select

    from improve.demo import seed
    from models import Improvement, Status
    from models.db import session_scope

    with session_scope() as session:
        counts = seed(session=session)
    if any(counts.values()):
        console.print("Demo data: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    with session_scope() as session:
        ids = session.exec(select(Improvement.id).where(Improvement.status == Status.submitted))
        return [i for i in ids if i is not None]


def _print_demo_sign_in(console: Any, stack: Stack) -> None:
    """How to sign in as a demo colleague: a single-use link, made for whoever started Improve."""
    from improve.demo import DEMO_SIGN_IN, email_of
    from improve.settings import settings
    from models.db import session_scope
    from tasks.access import find_colleague, new_sign_in_link

    email = email_of(DEMO_SIGN_IN)
    with session_scope() as session:
        colleague = find_colleague(session=session, email=email)
        if colleague is None:
            return
        _, token = new_sign_in_link(session=session, colleague=colleague)
    console.print(
        f"Sign in as {DEMO_SIGN_IN} (operations, {email}) by opening this link once, within "
        f"{settings.sign_in_link_minutes} minutes:\n  {stack.web_url}/signin/{token}\n"
        "Later, `improve sign-in-link EMAIL` prints a fresh link for any demo colleague, or ask "
        f"for one at {stack.web_url}/signin (signed in, the emails are at {stack.web_url}/mail)."
    )


def _print_urls(console: Any, stack: Stack, sink: bool, smtp_port: int | None) -> None:
    from rich.table import Table

    from improve.settings import settings

    table = Table.grid(padding=(0, 2))
    table.add_row("Web app", stack.web_url)
    table.add_row("Prefect UI", stack.ui_url)
    if sink:
        sink_at = f"{settings.smtp_host}:{smtp_port}"
        table.add_row("Mail", f"{stack.web_url}/mail  (SMTP sink on {sink_at})")
    else:
        table.add_row("Mail", f"relay {settings.smtp_host}:{settings.smtp_port}")
    table.add_row("Logs", str(stack.logs))
    console.print("[bold green]Improve is running.[/]")
    console.print(table)
    console.print("Press Ctrl-C to stop.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m improve.stack")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("prefect_file", nargs="?", type=Path, default=PREFECT_FILE)
    parser.add_argument("--parent", type=int, help="end, flow runs and all, when this process does")
    arguments = parser.parse_args()
    if arguments.parent is not None:
        end_with(arguments.parent)
    os.chdir(REPO)
    serve_deployments(arguments.prefect_file)
