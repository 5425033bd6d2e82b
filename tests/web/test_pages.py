"""Staff pages: the dashboard, the improvement page, the list, and errors people can act on."""

from datetime import timedelta

import httpx
from sqlmodel import Session, select

from models import ApprovalStatus, Category, OutboxEmail, OutboxStatus, Status
from models.db import utcnow
from tasks.lifecycle import move
from tasks.mail import queue_email
from tests.factories import (
    make_approver,
    make_colleague,
    make_customer,
    make_improvement,
    make_partner,
)
from tests.web.helpers import action_link, approval_link, snapshot
from web.app import create_app


async def test_the_dashboard_counts_by_status_and_shows_who_has_waited_how_long(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    bea = make_approver(session, "Bea Jones", category=Category.resource)
    carl = make_colleague(session, "Carl Obi")
    waiting = make_improvement(
        session, asha, title="Double-sided printing", status=Status.awaiting_approval
    )
    make_improvement(session, asha, title="Bike to work scheme")
    make_improvement(
        session,
        asha,
        title="Boiler upgrade",
        category=Category.energy,
        status=Status.completed,
        measured_kwh=8400,
        kwh=9000,
        estimated_cost=3000,
    )
    approval_link(
        session, waiting, bea, on_behalf_of=carl, created_at=utcnow() - timedelta(days=3, hours=2)
    )
    before = snapshot()

    response = await client.get("/")

    assert response.status_code == 200
    page = response.text
    assert "3 improvements" in page
    assert '<span class="n">1</span><span class="l">Awaiting approval</span>' in page
    assert '<span class="n">1</span><span class="l">Completed</span>' in page
    assert '<span class="n">0</span><span class="l">Rejected</span>' in page
    assert "Approvals waiting (1)" in page
    assert "Bea Jones" in page and "for Carl Obi" in page
    assert "3 days" in page
    assert "Double-sided printing" in page and "Bike to work scheme" in page
    assert "8,400 kWh" in page  # measured impact
    assert "http://127.0.0.1:4200" in page
    assert 'href="/mail"' in page
    assert snapshot() == before


async def test_the_dashboard_lists_what_is_stuck_with_the_reason_and_a_link(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    olu = make_colleague(session, "Olu Ade")
    stranded = make_improvement(
        session, asha, title="Stranded idea", status=Status.awaiting_approval
    )
    lapsed = utcnow() - timedelta(days=2)
    approval_link(session, stranded, olu, status=ApprovalStatus.expired, expires_at=lapsed)
    make_improvement(session, asha, title="Approved, never planned", status=Status.approved)
    moving = make_improvement(session, asha, title="Moving", status=Status.awaiting_approval)
    approval_link(session, moving, olu)

    page = (await client.get("/")).text

    assert "Stuck (1)" in page
    assert f'<a href="/improvements/{stranded.id}">{stranded.reference}</a> Stranded idea' in page
    assert (
        "awaiting approval, but no request is open: the last one, to Olu Ade at level 1, "
        f"expired on {lapsed:%Y-%m-%d}"
    ) in page
    assert "2 days ago" in page
    assert "Approvals waiting (1)" in page


async def test_the_dashboard_of_an_empty_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert "No approval is waiting." in response.text
    assert "Nothing is stuck." in response.text
    assert "Submit the first idea" in response.text


async def test_the_improvement_page_tells_the_whole_story(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    bea = make_approver(session, "Bea Jones", category=Category.resource)
    carl = make_colleague(session, "Carl Obi")
    nia = make_customer(session, "Nia Brown")
    print_co = make_partner(session, "PrintCo", contact_name="Sam Reid")
    improvement = make_improvement(
        session,
        asha,
        customers=[nia],
        partners=[print_co],
        description="<script>alert('x')</script> Switch to e-statements.",
        estimated_cost=2000,
        annual_saving=4800,
    )
    move(
        session=session,
        improvement_id=improvement.id,
        to=Status.awaiting_approval,
        actor="route-improvement",
        channel="flow",
        reason="asked Bea Jones (level 1 of 1)",
    )
    session.commit()
    approval_link(
        session,
        improvement,
        bea,
        on_behalf_of=carl,
        status=ApprovalStatus.approved,
        decided_at=utcnow(),
        comment="Go ahead",
    )
    action_link(session, improvement, carl, title="Tell the print room")
    queue_email(
        session=session,
        key="t:1",
        to=bea.email,
        template="approval_request",
        context={},
        improvement_id=improvement.id,
    )
    session.commit()
    row = session.exec(select(OutboxEmail).where(OutboxEmail.idempotency_key == "t:1")).one()
    row.status, row.attempts, row.last_error = OutboxStatus.failed, 3, "550 mailbox unavailable"
    session.add(row)
    session.commit()
    before = snapshot()

    response = await client.get(f"/improvements/{improvement.id}")

    assert response.status_code == 200
    page = response.text
    for text in [
        improvement.reference,
        "Paperless statements for account customers",
        "&lt;script&gt;alert(",  # shown, never run
        "£2,000",
        "£4,800",
        "about 5 months",
        "Nia Brown",
        "PrintCo",
        "Sam Reid",
        "Bea Jones",
        "on behalf of Carl Obi",
        "Go ahead",
        "Tell the print room",
        "Submitted → Awaiting approval",
        "route-improvement",
        "asked Bea Jones (level 1 of 1)",
        "Approval request",
        "550 mailbox unavailable",
    ]:
        assert text in page, text
    assert "<script>" not in page
    assert snapshot() == before


async def test_an_unknown_improvement_is_a_404_page_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/improvements/999")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "IMP-999 not found" in response.text


async def test_the_list_page_filters(client: httpx.AsyncClient, session: Session) -> None:
    asha = make_colleague(session, "Asha Patel")
    make_improvement(session, asha, title="Solar roof", category=Category.energy)
    make_improvement(session, asha, title="Compost bins", category=Category.waste)

    response = await client.get("/improvements", params={"category": "energy"})

    assert response.status_code == 200
    assert "Solar roof" in response.text and "Compost bins" not in response.text
    assert "1 energy improvement" in response.text


async def test_an_unknown_page_is_a_friendly_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is no page at /no/such/page" in response.text


async def test_an_unexpected_error_is_a_plain_500_without_a_traceback(caplog) -> None:
    app = create_app()

    def boom() -> None:
        raise RuntimeError("secret internals at line 42")

    app.add_api_route("/boom", boom)
    app.add_api_route("/api/boom", boom)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/boom")
        api = await client.get("/api/boom")

    assert page.status_code == 500
    assert "Something went wrong on our side" in page.text
    assert api.status_code == 500
    assert api.json() == {"detail": "internal error: the server logged the details", "errors": {}}
    for text in (page.text, api.text):
        assert "Traceback" not in text and "secret internals" not in text
    assert "secret internals at line 42" in caplog.text  # logged on the server


async def test_pages_carry_a_policy_that_runs_no_script(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
