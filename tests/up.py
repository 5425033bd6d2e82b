"""A real `improve up` of a test's own, and what /proc says about it (Linux).

`improve up --no-demo` runs as a process of its own, on free ports, with a data directory of its
own (its Prefect server, logs and mail sink), against the test database. Used by the tests of
its supervision (tests/test_stack.py) and by the fault suite (tests/faults/run.py).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from improve.stack import REPO, free_port

DEADLINE = 90.0  # seconds: `improve up` starts in about 20 on a busy machine


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    data: Path
    web_port: int
    prefect_port: int
    smtp_port: int  # its own mail sink's, or the relay's it sends to

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def ports(self) -> list[int]:
        return [self.web_port, self.prefect_port, self.smtp_port]

    def console(self) -> str:
        try:
            return (self.data / "console.txt").read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_console(self, line: str) -> None:
        wait_until(lambda: line in self.console(), f"{line!r} on the console", self.console)

    def child(self, command: str) -> int | None:
        """The pid of the child of `improve up` whose command line contains `command`."""
        return next(
            (pid for pid, cmd in children_of(self.process.pid).items() if command in cmd), None
        )

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


def start_up(
    data: Path,
    *,
    relay_port: int | None = None,
    preexec: Callable[[], object] | None = None,
    seconds: float = DEADLINE,
) -> Up:
    """`improve up --no-demo` on free ports, once it says it is running.

    With `relay_port` it sends to the SMTP server listening there; otherwise to a mail sink of
    its own.
    """
    data.mkdir(parents=True, exist_ok=True)
    web_port, prefect_port = free_port(), free_port()
    env = {**os.environ, "IMPROVE_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    ports = ["--web-port", str(web_port), "--prefect-port", str(prefect_port)]
    if relay_port is None:
        smtp_port = free_port()
        ports += ["--smtp-port", str(smtp_port)]
    else:
        smtp_port = relay_port
        env |= {
            "IMPROVE_SMTP_RELAY_CONFIGURED": "true",
            "IMPROVE_SMTP_HOST": "127.0.0.1",
            "IMPROVE_SMTP_PORT": str(relay_port),
        }
    with (data / "console.txt").open("wb") as console:
        process = subprocess.Popen(
            [sys.executable, "-m", "improve.cli", "up", "--no-demo", *ports],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=console,
            stderr=subprocess.STDOUT, preexec_fn=preexec,
        )  # fmt: skip
    up = Up(process, data, web_port, prefect_port, smtp_port)
    try:
        wait_until(
            lambda: "Improve is running." in up.console() or process.poll() is not None,
            "improve up to start",
            up.console,
            seconds,
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


def process_state(pid: int) -> tuple[str, int] | None:
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
    return {
        pid: _cmdline(pid) for pid in pids if (state := process_state(pid)) and state[1] == parent
    }


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
