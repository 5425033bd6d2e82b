"""Who may reach what: every route but the public ones needs a colleague; roles; API tokens."""

import re
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from improve.cli import app as cli
from improve.settings import settings
from models import Access, ApiToken, Category, Improvement, Status, Transition
from tests.factories import make_approver, make_colleague
from tests.web.conftest import sign_in
from tests.web.helpers import snapshot
from web.app import create_app, served_routes

# Reached from an email, needed to sign in, or published: the only routes a stranger may open.
PUBLIC = {
    "/healthz",
    "/approvals/{approval_id}/{token}",
    "/actions/{action_id}/{token}",
    "/help/{help_id}/{token}",
    "/choices/{case_id}/{token}",
    "/invitations/{invitation_id}/{token}",
    "/unsubscribe/{customer_id}/{purpose}/{token}",
    "/signin",
    "/signin/{token}",
    "/signout",
    "/signin/oidc",
    "/signin/oidc/callback",
    # The public impact report, for the community (S19), and its stakeholders' unsubscribe link.
    "/impact",
    "/impact/charts/{name}.png",
    "/impact/unsubscribe/{stakeholder_id}/{token}",
    "/suggest",
    "/suggest/confirm/{suggestion_id}/{token}",
    "/partners/{partner_id}/policies/stop/{token}",
}

runner = CliRunner()


def _routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, whatever router it came from."""
    found = []
    for route in served_routes(create_app()):
        for method in sorted(route.methods or ()):
            found.append((method, route.path))
    return found


def _example(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_public_route_is_served() -> None:
    assert {path for _, path in _routes()} >= PUBLIC


@pytest.mark.parametrize(("method", "path"), [r for r in _routes() if r[1] not in PUBLIC])
async def test_every_other_route_refuses_a_stranger(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    before = snapshot()
    answer = await anonymous.request(method, _example(path))

    if path.startswith("/api"):
        assert answer.status_code == 401, answer.text
        assert answer.json()["detail"].startswith("Please sign in")
        assert answer.headers["www-authenticate"] == "Bearer"
    elif method in ("GET", "HEAD"):
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin?next=")
    else:
        assert answer.status_code == 401 and "sign in" in answer.text
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/", "/api/improvements"])
async def test_a_made_up_token_or_cookie_is_refused(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    for headers in ({"Authorization": "Bearer imp_made-up"}, {"Cookie": "improve_session=a.b"}):
        answer = await anonymous.get(path, headers=headers)
        assert answer.status_code in (401, 303)


async def test_a_colleague_cannot_submit_in_someone_elses_name(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    # The hole this closes: a goodwill gesture in the name of someone with goodwill authority
    # would have been approved at once, "within the submitter's own authority".
    lucy = make_colleague(session, "Lucy Evans")
    sam = make_approver(session, "Sam Lee", category=Category.goodwill, limit=500)
    sign_in(anonymous, lucy)
    before = snapshot()

    refused = await anonymous.post(
        "/api/improvements",
        json={
            "title": "Flowers for Mrs Ames",
            "category": "goodwill",
            "submitter_email": sam.email,
        },
    )

    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("Submitting for someone else needs the operations")
    assert snapshot() == before
    own = await anonymous.post(
        "/api/improvements", json={"title": "Flowers for Mrs Ames", "category": "goodwill"}
    )
    assert own.status_code == 201 and own.json()["submitter_id"] == lucy.id


async def test_operations_submits_on_behalf_and_the_history_says_so(
    client: httpx.AsyncClient, session: Session, operator: Any
) -> None:
    asha = make_colleague(session, "Asha Patel")

    made = await client.post(
        "/api/improvements",
        json={"title": "Reusable crates", "category": "waste", "submitter_email": asha.email},
    )

    assert made.status_code == 201, made.text
    improvement = session.get(Improvement, made.json()["id"])
    assert improvement is not None and improvement.submitter_id == asha.id
    [first] = session.exec(select(Transition)).all()
    assert (first.actor, first.to_status) == (operator.email, Status.submitted)
    assert first.reason == "submitted by Olu Operations on behalf of Asha Patel"


async def test_the_web_form_submits_as_the_signed_in_colleague(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    lucy = make_colleague(session, "Lucy Evans", access=Access.colleague)
    sign_in(anonymous, lucy)
    form = (await anonymous.get("/submit")).text
    assert "Suggested by" in form and "Lucy Evans" in form
    assert 'name="submitter_email"' not in form  # only operations may name someone else

    [form_token] = re.findall(r'name="form_token" value="([^"]+)"', form)
    fields = {"title": "Duplex printing", "category": "resource", "form_token": form_token}

    sent = await anonymous.post("/submit", data=fields)

    assert sent.status_code == 303
    assert session.exec(select(Improvement)).one().submitter_id == lucy.id


async def test_api_tokens_are_made_used_and_revoked_from_the_cli(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")

    made = runner.invoke(cli, ["token", "create", "--colleague", asha.email, "--name", "export"])

    assert made.exit_code == 0, made.output
    [token] = re.findall(r"^imp_\S+$", made.output, re.M)
    row = session.exec(select(ApiToken)).one()
    assert token not in str(snapshot())  # only its hash is kept
    assert row.last_used_at is None
    bearer = {"Authorization": f"Bearer {token}"}

    assert (await anonymous.get("/api/improvements", headers=bearer)).status_code == 200
    session.refresh(row)
    assert row.last_used_at is not None
    listed = runner.invoke(cli, ["token", "list"])
    assert "export" in listed.output

    revoked = runner.invoke(cli, ["token", "revoke", str(row.id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    after = await anonymous.get("/api/improvements", headers=bearer)
    assert after.status_code == 401
    assert after.json()["detail"].startswith("This API token is not valid, or it was revoked")


def test_an_api_token_for_an_unknown_colleague_is_refused_by_name(session: Session) -> None:
    made = runner.invoke(cli, ["token", "create", "--colleague", "x@example.org", "--name", "n"])
    assert made.exit_code == 2
    assert "no active colleague has the email" in made.output


def test_the_openapi_document_declares_the_schemes() -> None:
    schemes = create_app().openapi()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `improve token create`.",
    }
    assert schemes["APIKeyCookie"]["in"] == "cookie"


async def test_production_serves_no_mail_sink(
    monkeypatch: pytest.MonkeyPatch, operator: Any
) -> None:
    monkeypatch.setattr(settings, "environment", "production")
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        sign_in(client, operator)
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/mail")).status_code == 404
        assert (await client.get("/api/mail")).status_code == 404
        assert 'href="/mail"' not in (await client.get("/")).text


async def test_a_script_submits_with_its_api_token(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    made = runner.invoke(cli, ["token", "create", "--colleague", asha.email, "--name", "script"])
    [token] = re.findall(r"^imp_\S+$", made.output, re.M)

    created = await anonymous.post(
        "/api/improvements",
        json={"title": "Paperless payslips", "category": "resource"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert created.status_code == 201, created.text
    assert created.json()["submitter_id"] == asha.id


async def test_everyone_sees_who_approves_what_and_only_admins_give_roles(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    make_approver(session, "Bea Jones", category=Category.waste, limit=10_000)
    lucy = make_colleague(session, "Lucy Evans")
    sign_in(anonymous, lucy)

    listed = await anonymous.get("/colleagues")
    assert listed.status_code == 200
    assert "Bea Jones" in listed.text and "Waste up to £10,000" in listed.text
    assert 'action="/colleagues/access"' not in listed.text
    refused = await anonymous.post(
        "/colleagues/access", data={"email": lucy.email, "access": "admin"}
    )
    assert refused.status_code == 403 and "This needs the admin role" in refused.text
    session.refresh(lucy)
    assert lucy.access == Access.colleague


async def test_an_admin_gives_a_role_but_the_last_admin_cannot_step_down(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    dana = make_colleague(session, "Dana Okafor", access=Access.admin)
    lucy = make_colleague(session, "Lucy Evans")
    sign_in(anonymous, dana)

    given = await anonymous.post(
        "/colleagues/access", data={"email": lucy.email, "access": "operations"}
    )
    assert given.status_code == 200 and "Lucy Evans now has the operations role." in given.text
    kept = await anonymous.post(
        "/colleagues/access", data={"email": dana.email, "access": "colleague"}
    )
    assert kept.status_code == 422 and "the only admin" in kept.text
    session.refresh(lucy)
    session.refresh(dana)
    assert (lucy.access, dana.access) == (Access.operations, Access.admin)


def test_the_first_admin_is_made_from_the_command_line(session: Session) -> None:
    dana = make_colleague(session, "Dana Okafor")

    made = runner.invoke(cli, ["role", dana.email, "admin"])

    assert made.exit_code == 0, made.output
    assert "Dana Okafor now has the admin role." in made.output
    session.refresh(dana)
    assert dana.access == Access.admin
    wrong = runner.invoke(cli, ["role", dana.email, "superuser"])
    assert wrong.exit_code == 2
