"""A real OpenID Connect provider (npm oidc-provider) on loopback, and a browser walk of it."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
# It is ready in about two seconds; one CI run on a busy machine once waited past 30 s for it.
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 5.0
# npm ci downloads ~40 small packages; generous, as a cold cache on CI is slower than here.
INSTALL_TIMEOUT_SECONDS = 300.0
# Requests one sign-in may take at the provider: authorize, login, resume, consent, resume, plus
# the provider's own logout when the browser was signed in as someone else; the rest is margin.
MAX_STEPS = 20
# What oidc-provider's self-submitting pages run on load.
_AUTO_SUBMIT = "document.forms[0].submit()"


@dataclass(frozen=True)
class Provider:
    """A running provider and the one confidential client it knows."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    port: int

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"`{name}` is not on PATH: the OIDC tests run a real provider on Node.js 20+ "
            f"(npm package oidc-provider, see {OIDC_DIR / 'package.json'})"
        )
    return path


def _installed_version_matches() -> bool:
    # A pin bumped in package.json must not keep running the previously installed version.
    installed = OIDC_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not installed.is_file():
        return False
    wanted = json.loads((OIDC_DIR / "package.json").read_text())["dependencies"]["oidc-provider"]
    return bool(json.loads(installed.read_text())["version"] == wanted)


def ensure_installed() -> None:
    """Install tests/oidc's npm dependencies unless the pinned version is already there."""
    node = _tool("node")
    npm = _tool("npm")
    if _installed_version_matches():
        return
    lock = OIDC_DIR / "package-lock.json"
    # `npm ci` installs exactly the lock file; scripts are not needed by oidc-provider or its deps.
    command = [
        npm,
        "ci" if lock.is_file() else "install",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
    ]
    result = subprocess.run(
        command,
        cwd=OIDC_DIR,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0 or not _installed_version_matches():
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        raise RuntimeError(
            f"{' '.join(command)} in {OIDC_DIR} failed (exit {result.returncode}, "
            f"node {version.strip()}):\n{result.stdout}\n{result.stderr}"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    """The issuer from the provider's READY line; raises with its stderr if it never comes."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for line in stdout.read_text().splitlines():
            if line.startswith("READY "):
                return line.removeprefix("READY ").strip()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    exited = process.poll()
    _stop(process)
    state = f"exited with {exited}" if exited is not None else "timed out"
    raise RuntimeError(
        f"OIDC provider {state} before READY ({PROVIDER_SCRIPT}):\n"
        f"--- stdout ---\n{stdout.read_text()}\n--- stderr ---\n{stderr.read_text()}"
    )


@contextlib.contextmanager
def running_provider(
    *, client_id: str, client_secret: str, redirect_uri: str
) -> Iterator[Provider]:
    """Run tests/oidc/provider.mjs on a free loopback port for the duration of the block."""
    ensure_installed()
    node = _tool("node")
    with tempfile.TemporaryDirectory(prefix="improve-oidc-") as tmp:
        # Files, not pipes: nobody reads the provider's output after READY, and a full pipe
        # would block it mid-request.
        stdout, stderr = Path(tmp) / "stdout", Path(tmp) / "stderr"
        port = _free_port()
        env = {
            **os.environ,
            "OIDC_PORT": str(port),
            "OIDC_CLIENT_ID": client_id,
            "OIDC_CLIENT_SECRET": client_secret,
            "OIDC_REDIRECT_URI": redirect_uri,
        }
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT)],
                cwd=OIDC_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        try:
            issuer = _wait_ready(process, stdout, stderr)
            yield Provider(
                issuer=issuer,
                client_id=client_id,
                client_secret=client_secret,
                redirect_uri=redirect_uri,
                port=port,
            )
        finally:
            _stop(process)


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    """The forms of a page with their named inputs, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            method = attributes.get("method", "get").lower()
            self.forms.append(_Form(action=attributes.get("action", ""), method=method))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1].fields[attributes["name"]] = attributes.get("value", "")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def log_in_at_provider(http: httpx.AsyncClient, authorize_url: str, *, login: str) -> str:
    """Sign in at the provider as `login` and consent, as a browser would; return the redirect to
    the relying party (its redirect_uri with ?code=&state=, or ?error=) without requesting it.

    `http` must speak real HTTP (not the app's ASGITransport client, which would send the
    provider's URLs to the app); its cookie jar carries the provider's session between pages.
    """
    provider_origin = _origin(authorize_url)
    method, url, data = "GET", authorize_url, None
    for _ in range(MAX_STEPS):
        if method == "POST":
            response = await http.post(url, data=data, follow_redirects=False)
        else:
            response = await http.get(url, params=data, follow_redirects=False)
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _origin(location) != provider_origin:
                return location
            method, url, data = "GET", location, None
            continue
        if response.status_code != 200:
            raise AssertionError(
                f"provider answered {method} {url} with {response.status_code}:\n{response.text}"
            )
        parser = _FormParser()
        parser.feed(response.text)
        # devInteractions pages carry their step in a hidden "prompt" input: login or consent.
        prompts = [form for form in parser.forms if "prompt" in form.fields]
        if len(prompts) == 1:
            form = prompts[0]
        elif parser.forms and _AUTO_SUBMIT in response.text:
            # A page a browser's script submits at once: the provider's own logout of the
            # previous account when another one signs in, or a response_mode=form_post answer.
            form = parser.forms[0]
        else:
            raise AssertionError(f"no sign-in or consent form at {url}:\n{response.text}")
        fields = dict(form.fields)
        if fields.get("prompt") == "login":
            # devInteractions accepts any password: the login is the account.
            fields.update(login=login, password="any password")
        action = urljoin(str(response.url), form.action)
        if _origin(action) != provider_origin:
            raise AssertionError(
                f"the provider answers by posting a form to {action} (response_mode=form_post);"
                " log_in_at_provider returns redirects only: use the default response_mode=query"
            )
        method, url, data = form.method.upper(), action, fields
    raise AssertionError(f"no redirect to the relying party after {MAX_STEPS} provider pages")
