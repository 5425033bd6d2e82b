"""A real browser against the real web app: Debian's chromium driven by Playwright.

`make install` installs chromium when /usr/bin/chromium is missing; Playwright's own browser
download is never used. The web app is served by uvicorn in a thread of the test process, so it
shares the test database and sends to the test SMTP server (tests/conftest.py).
"""

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from improve.settings import settings
from tests.smtpd import Received, SmtpServer, free_port
from web.app import create_app
from web.limits import reset_all

CHROMIUM = Path("/usr/bin/chromium")
# What this machine needs: no sandbox (root in a container), no GPU, and none of the background
# connections (updates, sync, QUIC) that a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE = 15.0  # seconds: a page or an email takes well under one


def chromium_path() -> str:
    """Debian's chromium; without it the test fails saying how to get it, it does not skip."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    hint = "run `make install` (it installs it), or `apt-get install chromium`"
    if shutil.which("apt-get") is None and shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is missing and this machine has no apt-get to install it")
    pytest.fail(f"{CHROMIUM} is missing: {hint}", pytrace=False)


@dataclass
class LiveApp:
    """The web app served over HTTP on a free port of 127.0.0.1."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def live_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveApp]:
    """uvicorn serving create_app() in a thread, with settings.base_url pointing at it, so the
    links in the emails it sends lead back to it."""
    reset_all()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(settings, "base_url", url)
    config = uvicorn.Config(
        create_app(), host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise AssertionError(f"the web app did not answer {url}/healthz")
        time.sleep(0.05)
    try:
        yield LiveApp(url, server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=DEADLINE)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Console:
    """What the pages said on the console and the errors they raised."""

    messages: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        if message.type not in ("error", "warning"):
            return
        if where.endswith("/favicon.ico"):
            return  # the browser asks for one by itself; the app has none (a 404, harmless)
        # CSP violations are reported here too ("Refused to ... Content Security Policy").
        self.messages.append(f"{message.type} at {where}: {message.text}")

    def record_error(self, error: Exception) -> None:
        self.messages.append(f"uncaught: {error}")

    def problems(self) -> list[str]:
        return list(self.messages)


@pytest.fixture
def page(browser: Browser, live_app: LiveApp) -> Iterator[tuple[Page, Console]]:
    """A fresh browser context (no cookies) on the live app, its console recorded."""
    context = browser.new_context(base_url=live_app.url)
    context.set_default_timeout(DEADLINE * 1000)
    console = Console()
    page = context.new_page()
    page.on("console", console.record)
    page.on("pageerror", console.record_error)
    try:
        yield page, console
    finally:
        context.close()


def wait_for_mail(smtp: SmtpServer, address: str) -> Received:
    """The first email to `address`, once it has arrived (it is sent after the response)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for message in smtp.received:
            if address in message.recipients:
                return message
        time.sleep(0.05)
    inbox = "\n".join(f"  to {m.recipients}: {m.subject}" for m in smtp.received) or "  no email"
    raise AssertionError(f"waited {DEADLINE:.0f} s for an email to {address}; so far:\n{inbox}")
