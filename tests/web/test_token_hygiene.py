"""No token outlives its email: a copy of the database opens no link, an old link says it was
replaced, the token is checked in the very update that acts, and no token reaches a log."""

import asyncio
import logging
import re
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlmodel import Session

from improve.errors import LinkRefused
from models import ActionItem, ApprovalRequest, ApprovalStatus, Category, Channel, Purpose
from models.db import utcnow
from tasks.approvals import route_improvement
from tasks.automatic import open_automatic_steps, run_automatic_step
from tasks.decisions import advance_after_decision, record_decision
from tasks.escalation import remind_and_escalate
from tasks.impact import announce_completion
from tasks.links import check_approval_link
from tasks.outbox import send_due
from tasks.planning import complete_improvement, plan_actions
from tests.factories import make_approver, make_colleague, make_customer
from tests.smtpd import SmtpServer, free_port
from tests.web.helpers import snapshot
from web.app import create_app

ACTING_LINK = re.compile(r"https?://\S+/(?:approvals|actions|unsubscribe|signin)/\S+")


def _links(smtp: SmtpServer) -> list[str]:
    return sorted({url for mail in smtp.received for url in ACTING_LINK.findall(mail.text)})


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _routed(client: httpx.AsyncClient, session: Session, **fields: object) -> int:
    made = await client.post(
        "/api/improvements", json={"title": "Paperless bills", "category": "resource", **fields}
    )
    assert made.status_code == 201, made.text
    improvement_id = made.json()["id"]
    route_improvement(
        session=session, improvement_id=improvement_id, actor="flow", channel=Channel.flow
    )
    session.commit()
    return int(improvement_id)


async def test_a_copy_of_the_database_opens_no_link(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    make_approver(session, "Bea Jones", category=Category.resource, limit=10_000)
    ruth = make_customer(session, "Ruth Ames", consents=(Purpose.improvement_updates,))
    improvement_id = await _routed(client, session, customer_emails=[ruth.email])
    await send_due()

    # The whole lifecycle, each step by the link in its email, as people do it.
    [approve] = [u for u in _links(smtp) if "/approvals/" in u]
    assert (await client.post(_path(approve), data={"decision": "approve"})).status_code == 200
    advance_after_decision(session=session, improvement_id=improvement_id, actor="flow")
    plan_actions(session=session, improvement_id=improvement_id, actor="flow")
    session.commit()
    await send_due()
    for url in [u for u in _links(smtp) if "/actions/" in u]:
        done = await client.post(_path(url), data={"measured_saving": "120", "note": "done"})
        assert done.status_code == 200, done.text
    for action_id in open_automatic_steps(session=session, improvement_id=improvement_id):
        run_automatic_step(session=session, action_id=action_id)
    session.commit()
    assert complete_improvement(session=session, improvement_id=improvement_id, actor="flow")
    announce_completion(session=session, improvement_id=improvement_id)
    session.commit()
    # A sign-in link asked for, and one left unsent in the outbox, sealed.
    await client.post("/signin", data={"email": "olu.operations@example.org"})
    await send_due()
    remind_at = utcnow() + timedelta(days=3)
    await _routed(client, session, title="Duplex printing")
    remind_and_escalate(session=session, now=remind_at)
    session.commit()

    links = _links(smtp)
    kinds = {urlsplit(u).path.split("/")[1] for u in links}
    assert kinds == {"approvals", "actions", "unsubscribe", "signin"}, links
    dump = str(snapshot())
    for url in links:
        token = urlsplit(url).path.rsplit("/", 1)[-1]
        assert token not in dump, url
    session_token = client.cookies["improve_session"].split(".")[0]
    assert session_token not in dump
    assert not ACTING_LINK.search(dump), "a link that acts is stored in the clear"
    assert "sealed_links" in dump  # the unsent one, readable only with the secret key


async def test_an_old_link_says_a_newer_one_replaced_it(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    make_approver(session, "Bea Jones", category=Category.resource, limit=10_000)
    await _routed(client, session)
    await send_due()
    [first] = _links(smtp)
    reminded_at = utcnow() + timedelta(hours=49)
    remind_and_escalate(session=session, now=reminded_at)
    session.commit()
    smtp.clear()
    await send_due()
    [second] = _links(smtp)

    old = await client.get(_path(first))

    assert old.status_code == 410
    assert "This link was replaced by a newer one" in old.text
    assert f"sent on {reminded_at:%Y-%m-%d}" in old.text
    assert (await client.get(_path(second))).status_code == 200


async def test_the_token_is_checked_in_the_update_that_decides(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    make_approver(session, "Bea Jones", category=Category.resource, limit=10_000)
    await _routed(client, session)
    await send_due()
    [first] = _links(smtp)
    approval_id, token = int(first.split("/")[-2]), first.rsplit("/", 1)[-1]
    check_approval_link(session=session, approval_id=approval_id, token=token)  # still live
    # ...and in the moment before the decision is written, a reminder replaces the link.
    remind_and_escalate(session=session, now=utcnow() + timedelta(hours=49))
    session.commit()

    with pytest.raises(LinkRefused, match="replaced by a newer one"):
        record_decision(
            session=session,
            approval_id=approval_id,
            approve=True,
            comment="",
            channel=Channel.email,
            token=token,
        )
    session.rollback()
    assert session.get(ApprovalRequest, approval_id).status == ApprovalStatus.pending  # type: ignore[union-attr]


def test_an_action_token_is_checked_in_the_update_that_completes(session: Session) -> None:
    from tasks.planning import complete_action
    from tests.factories import make_improvement
    from tests.web.helpers import action_link

    owner = make_colleague(session, "Tom Barker")
    item, path = action_link(session, make_improvement(session, owner), owner)
    with pytest.raises(LinkRefused):
        complete_action(session=session, action_id=item.id, by="x", token="not-the-token")  # type: ignore[arg-type]
    session.rollback()
    assert session.get(ActionItem, item.id).status == "open"  # type: ignore[union-attr]
    done = complete_action(
        session=session,
        action_id=item.id,
        by=owner.email,
        token=path.rsplit("/", 1)[-1],  # type: ignore[arg-type]
    )
    assert done.status == "done"


async def test_no_token_reaches_the_access_log(session: Session) -> None:
    from tests.factories import make_improvement
    from tests.web.helpers import approval_link

    bea = make_approver(session, "Bea Jones", category=Category.resource, limit=10_000)
    _, path = approval_link(session, make_improvement(session, bea), bea)
    token = path.rsplit("/", 1)[-1]
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_config=None, access_log=True)
    )
    access = logging.getLogger("uvicorn.access")
    keep, level = Keep(), access.level
    access.addHandler(keep)
    access.setLevel(logging.INFO)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    await http.get("/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert (await http.get(path)).status_code == 200
            await http.get(f"/signin/{token}x?next=/")
            await http.get(f"/signin/oidc/callback?code={token}&state=s")
    finally:
        server.should_exit = True
        thread.join(10)
        access.removeHandler(keep)
        access.setLevel(level)

    assert any("/approvals/{approval_id}/{token}" in line for line in seen), seen
    assert any("/signin/{token}" in line for line in seen), seen
    assert not [line for line in seen if token in line]
