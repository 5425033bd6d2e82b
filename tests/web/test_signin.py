"""Signing in by emailed link, signing out, sessions that end, CSRF, and the limits on guessing."""

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from models import Access, Improvement, SignInLink, WebSession
from models.db import utcnow
from tests.factories import make_colleague
from tests.smtpd import Received, SmtpServer
from tests.web.conftest import sign_in
from tests.web.helpers import snapshot
from web import auth


async def _email_to(smtp: SmtpServer, address: str) -> Received:
    """The sign-in email, which the app sends right after answering."""
    for _ in range(100):
        mail = smtp.handler.to(address)
        if mail:
            return mail[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no email reached {address}")


def _sign_in_path(mail: Received) -> str:
    [url] = re.findall(r"http://\S+/signin/\S+", mail.text)
    return url.removeprefix("http://127.0.0.1:8000")


async def test_a_colleague_signs_in_with_the_link_emailed_to_them(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    asha = make_colleague(session, "Asha Patel")

    asked = await anonymous.post(
        "/signin", data={"email": asha.email.upper(), "next": "/improvements?status=submitted"}
    )
    assert asked.status_code == 200 and "Check your email" in asked.text
    mail = await _email_to(smtp, asha.email)
    assert mail.subject == "Your link to sign in to Improve"
    path = _sign_in_path(mail)

    before = snapshot()
    shown = await anonymous.get(path)
    assert shown.status_code == 200 and "Sign in as Asha Patel" in shown.text
    assert snapshot() == before  # a mail scanner opening the link signs nobody in

    signed = await anonymous.post(path)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/improvements?status=submitted"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{auth.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie

    dashboard = await anonymous.get("/")
    assert dashboard.status_code == 200 and "Asha Patel" in dashboard.text
    assert (await anonymous.post(path)).status_code == 410  # single use
    # Only hashes are stored: neither the link's token nor the session's is in the database.
    token = path.rsplit("/", 1)[-1].split("?")[0]
    assert session.exec(select(SignInLink)).one().token_hash != token
    assert token not in str(snapshot())
    assert anonymous.cookies[auth.COOKIE].split(".")[0] not in str(snapshot())


async def test_an_unknown_address_gets_the_same_answer_and_no_email(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    make_colleague(session, "Asha Patel")
    gone = make_colleague(session, "Old Timer", active=False)
    for email in ("stranger@example.org", gone.email):
        answer = await anonymous.post("/signin", data={"email": email})
        assert answer.status_code == 200 and "Check your email" in answer.text
    await asyncio.sleep(0.3)
    assert smtp.received == []
    assert session.exec(select(SignInLink)).all() == []


async def test_an_expired_or_made_up_sign_in_link_says_so(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    asha = make_colleague(session, "Asha Patel")
    await anonymous.post("/signin", data={"email": asha.email})
    path = _sign_in_path(await _email_to(smtp, asha.email))
    session.exec(update(SignInLink).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
    session.commit()

    expired = await anonymous.post(path)
    assert expired.status_code == 410 and "expired" in expired.text
    assert auth.COOKIE not in expired.headers.get("set-cookie", "")
    made_up = await anonymous.get("/signin/not-a-real-token")
    assert made_up.status_code == 404 and "not valid" in made_up.text


async def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(
    client: httpx.AsyncClient,
) -> None:
    stolen = client.cookies[auth.COOKIE]
    assert (await client.get("/")).status_code == 200

    out = await client.post("/signout")
    assert out.status_code == 303 and out.headers["location"] == "/signin?signed_out=true"
    assert 'improve_session=""' in out.headers["set-cookie"]

    client.cookies.set(auth.COOKIE, stolen)
    after = await client.get("/")
    assert after.status_code == 303 and after.headers["location"] == "/signin?next=/"
    assert (await client.get("/api/improvements")).status_code == 401


async def test_a_session_ends_when_it_expires(client: httpx.AsyncClient, session: Session) -> None:
    session.exec(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
    session.commit()

    page = await client.get("/improvements")
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/improvements"
    api = await client.get("/api/improvements")
    assert api.status_code == 401
    assert api.json()["detail"].startswith("Your sign-in has ended.")
    assert api.headers["www-authenticate"] == "Bearer"


async def test_a_cookie_with_a_forged_signature_is_refused(
    client: httpx.AsyncClient,
) -> None:
    token = client.cookies[auth.COOKIE].split(".")[0]
    client.cookies.set(auth.COOKIE, f"{token}.forged")
    assert (await client.get("/")).status_code == 303


@pytest.mark.parametrize("csrf", [None, "wrong"])
async def test_a_form_without_its_csrf_token_changes_nothing(
    client: httpx.AsyncClient, session: Session, csrf: str | None
) -> None:
    del client.headers["X-CSRF-Token"]
    form = {"title": "Paperless payslips", "category": "resource"}
    if csrf:
        form["csrf_token"] = csrf
    before = snapshot()

    refused = await client.post("/submit", data=form)

    assert refused.status_code == 403
    assert "CSRF token is missing or wrong" in refused.text
    assert snapshot() == before
    assert session.exec(select(Improvement)).all() == []


async def test_the_csrf_token_in_the_page_is_the_one_that_works(
    client: httpx.AsyncClient, session: Session
) -> None:
    del client.headers["X-CSRF-Token"]
    form = (await client.get("/submit")).text
    [token] = re.findall(r'name="csrf_token" value="([^"]+)"', form)[:1]
    [form_token] = re.findall(r'name="form_token" value="([^"]+)"', form)
    fields = {"title": "Paperless payslips", "category": "resource", "form_token": form_token}

    sent = await client.post("/submit", data={**fields, "csrf_token": token})

    assert sent.status_code == 303, sent.text
    assert session.exec(select(Improvement)).one().title == "Paperless payslips"


async def test_sign_in_links_are_limited_per_address_and_per_client(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    asha = make_colleague(session, "Asha Patel")
    for _ in range(7):
        answer = await anonymous.post("/signin", data={"email": asha.email})
        assert answer.status_code == 200
    await asyncio.sleep(0.3)
    assert len(session.exec(select(SignInLink)).all()) == 5  # the per-address allowance

    for n in range(13):  # 20 per client in all
        assert (
            await anonymous.post("/signin", data={"email": f"x{n}@example.org"})
        ).status_code == 200
    refused = await anonymous.post("/signin", data={"email": asha.email})
    assert refused.status_code == 429 and "Too many sign-in requests" in refused.text
    assert int(refused.headers["retry-after"]) > 0


async def test_a_client_guessing_tokens_is_stopped(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    for n in range(30):
        guess = await anonymous.get("/api/improvements", headers={"Authorization": f"Bearer g{n}"})
        assert guess.status_code == 401
    stopped = await anonymous.get("/approvals/1/another-guess")
    assert stopped.status_code == 429 and "Too many refused links or tokens" in stopped.text


async def test_roles_decide_who_sees_customer_contacts(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, session: Session
) -> None:
    from models import ImprovementCustomer
    from tests.factories import make_customer, make_improvement

    improvement = make_improvement(session, make_colleague(session, "Asha Patel"))
    customer = make_customer(session, email="ruth.ames@example.com")
    session.add(ImprovementCustomer(improvement_id=improvement.id, customer_id=customer.id))
    session.commit()

    assert customer.email in (await client.get(f"/improvements/{improvement.id}")).text
    plain = make_colleague(session, "Lucy Evans", access=Access.colleague)
    sign_in(anonymous, plain)
    page = await anonymous.get(f"/improvements/{improvement.id}")
    assert page.status_code == 200 and customer.name in page.text
    assert customer.email not in page.text
