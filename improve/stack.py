"""The stack `improve up` runs on one machine: Prefect server, served flows, web app, mail sink.

`Stack` starts and stops the processes; `up` adds the database, demo data, the sink and the
console. The end-to-end tests and the benchmarks use the same `Stack`, so what they exercise is
what `improve up` runs. The flows are served from prefect.yaml by `serve_deployments`, in a child
process started as `python -m improve.stack serve`.
"""

import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import TypeAdapter

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "prefect.yaml"
STOP_TIMEOUT = 10.0  # seconds a child gets to stop on SIGTERM before it is killed


# --- prefect.yaml, served --------------------------------------------------------------------


def deployment_specs(prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The `deployments:` of prefect.yaml, as written."""
    return list(yaml.safe_load(prefect_file.read_text())["deployments"])


def load_deployments(prefect_file: Path = PREFECT_FILE) -> list[Any]:
    """Each deployment of prefect.yaml as a RunnerDeployment, ready to serve.

    Triggers, schedules and concurrency limits are read the way `prefect deploy` reads them;
    the work pool is left out, because a served deployment runs in the serving process's runner.
    Run from the repository root, so the entrypoints match the file's.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events import DeploymentTriggerTypes
    from prefect.schedules import Cron, Interval

    triggers = TypeAdapter(DeploymentTriggerTypes)
    deployments = []
    for spec in deployment_specs(prefect_file):
        path, _, attribute = spec["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        limit = spec.get("concurrency_limit")
        deployment = flow.to_deployment(
            name=spec["name"],
            description=spec.get("description"),
            tags=spec.get("tags"),
            parameters=spec.get("parameters"),
            concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
            triggers=[
                triggers.validate_python({"name": f"{spec['name']}__automation_{i}", **trigger})
                for i, trigger in enumerate(spec.get("triggers") or [], start=1)
            ],
            schedules=[
                Interval(timedelta(seconds=s["interval"])) if "interval" in s else Cron(s["cron"])
                for s in spec.get("schedules") or []
            ],
        )
        if deployment.entrypoint != spec["entrypoint"]:
            raise RuntimeError(
                f"{spec['name']}: entrypoint {deployment.entrypoint!r} is not prefect.yaml's "
                f"{spec['entrypoint']!r}; serve from the repository root ({REPO})"
            )
        deployments.append(deployment)
    return deployments


def serve_deployments(prefect_file: Path = PREFECT_FILE) -> None:
    """Serve every deployment of prefect.yaml until interrupted (each run is a new process)."""
    from prefect import serve

    serve(*load_deployments(prefect_file), print_starting_message=False)


# --- the processes ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the child's whole process group (its flow runs too); kill what lingers."""
        if self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue


class StackFailed(RuntimeError):
    """A part of the stack did not start, with the end of its log."""


@dataclass
class Stack:
    """The Prefect server, the served deployments and the web app, as child processes.

    Children inherit this process's environment (IMPROVE_* settings, so the flows use the same
    database and SMTP server), plus PREFECT_API_URL pointing at the server started here.
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

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
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
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

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
        )  # fmt: skip
        self.wait_for(f"{self.api_url}/health", server)

    def start_serving(self) -> None:
        serve = [sys.executable, "-m", "improve.stack", "serve", str(self.prefect_file)]
        self.spawn("flows", serve)

    def start_web(self) -> None:
        web = self.spawn(
            "web",
            [sys.executable, "-m", "uvicorn", "web.app:app",
             "--host", self.host, "--port", str(self.web_port), "--log-level", "warning"],
        )  # fmt: skip
        self.wait_for(f"{self.web_url}/healthz", web)

    def wait_for(self, url: str, child: Child, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackFailed(f"{child.name} did not answer {url} in {timeout:.0f} s:\n{child.tail()}")

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
        flows = next(c for c in self.children if c.name == "flows")
        raise StackFailed(f"the deployments were not served in {timeout:.0f} s:\n{flows.tail()}")

    def check_alive(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise StackFailed(
                    f"{child.name} stopped (exit {code}); the end of {child.log}:\n{child.tail()}"
                )

    def stop(self) -> None:
        """Stop the children, newest first: web app, flows, then the server they talk to."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


# --- improve up ------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def up(
    *, demo: bool, web_port: int = 8000, prefect_port: int = 4200, smtp_port: int | None = None
) -> None:
    """Run Improve on this machine until Ctrl-C or SIGTERM, then stop everything cleanly."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from rich.console import Console

    from improve import events
    from improve.settings import settings
    from improve.sink import start_sink
    from models.db import init_db

    console = Console()
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
    )
    sink = None
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
            _print_urls(console, stack, sink is not None, smtp_port)
            if demo:
                _print_demo_sign_in(console, stack)
            while True:
                stack.check_alive()
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


def _seed_demo(console: Any) -> list[int]:
    """Seed the demo organisation (idempotent); the ids of its improvements awaiting routing."""
    from sqlmodel import select

    from models import Improvement, Status
    from models.db import session_scope

    try:
        from improve.demo import seed
    except ImportError:
        console.print("[yellow]No demo data:[/] improve/demo.py is not there yet.")
        return []
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
    if sys.argv[1:2] != ["serve"]:
        sys.exit("usage: python -m improve.stack serve [prefect.yaml]")
    os.chdir(REPO)
    serve_deployments(Path(sys.argv[2]) if len(sys.argv) > 2 else PREFECT_FILE)
