"""The JSON API: 201 with the new improvement, 422 naming each bad field, 404 naming IMP-n."""

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from models import ApprovalStatus, Category, IdempotencyKey, Improvement, Status
from models.db import utcnow
from tasks.lifecycle import move
from tests.factories import make_approver, make_colleague, make_improvement
from tests.web.conftest import Events, sign_in
from tests.web.helpers import action_link, approval_link, snapshot


async def test_post_creates_answers_201_with_its_url_and_announces_it(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    asha = make_colleague(session, "Asha Patel")

    response = await client.post(
        "/api/improvements",
        json={
            "title": "  Reuse   packaging from suppliers ",
            "category": "waste",
            "submitter_email": asha.email,
            "kg_waste": 300,
            "estimated_cost": 0,
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["title"] == "Reuse packaging from suppliers"
    assert body["status"] == "submitted"
    assert body["reference"] == f"IMP-{body['id']}"
    assert body["url"] == f"http://127.0.0.1:8000/improvements/{body['id']}"
    assert body["kg_waste"] == 300
    assert response.headers["location"] == f"/api/improvements/{body['id']}"
    assert events.emitted() == [
        (
            "improve.improvement.submitted",
            f"improve.improvement.{body['id']}",
            [("submitter", f"improve.colleague.{asha.id}")],
        )
    ]


async def test_422_names_each_bad_field_and_writes_nothing(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    make_colleague(session, "Asha Patel")
    before = snapshot()

    response = await client.post(
        "/api/improvements",
        json={"title": "", "category": "teleportation", "estimated_cost": -1, "kwh": "lots"},
    )

    assert response.status_code == 422
    body = response.json()
    assert set(body["errors"]) == {"title", "category", "estimated_cost", "kwh"}
    assert body["errors"]["estimated_cost"] == "cannot be negative"
    assert body["errors"]["kwh"] == "must be a number"
    assert "title" in body["detail"]
    assert snapshot() == before
    assert events.emitted() == []


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"submitter_email": "nobody@example.org"}, "submitter_email", "no colleague"),
        ({"customer_emails": ["ghost@example.com"]}, "customer_emails", "unknown: ghost"),
        ({"partner_emails": ["ghost@example.net"]}, "partner_emails", "unknown: ghost"),
    ],
)
async def test_422_from_the_submission_step_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, session: Session, extra: dict, field: str, message: str
) -> None:
    asha = make_colleague(session, "Asha Patel")
    before = snapshot()

    response = await client.post(
        "/api/improvements",
        json={
            "title": "Solar panels",
            "category": "energy",
            "submitter_email": asha.email,
            **extra,
        },
    )

    assert response.status_code == 422
    assert message in response.json()["errors"][field]
    assert snapshot() == before


async def test_an_infinite_estimate_is_refused(client: httpx.AsyncClient, session: Session) -> None:
    asha = make_colleague(session, "Asha Patel")
    before = snapshot()

    response = await client.post(
        "/api/improvements",
        content=(
            f'{{"title": "Solar", "category": "energy", "submitter_email": "{asha.email}", '
            '"kwh": Infinity}'
        ),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["errors"]["kwh"] == "must be a finite number"
    assert snapshot() == before


async def test_a_body_that_is_not_json_gets_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/improvements", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"]


async def test_list_filters_by_status_and_category_newest_first_with_paging(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    a = make_improvement(session, asha, title="One", category=Category.energy)
    b = make_improvement(session, asha, title="Two", category=Category.waste)
    c = make_improvement(session, asha, title="Three", category=Category.energy)
    move(
        session=session, improvement_id=c.id, to=Status.awaiting_approval, actor="t", channel="flow"
    )
    session.commit()

    everything = (await client.get("/api/improvements")).json()
    assert [i["id"] for i in everything["items"]] == [c.id, b.id, a.id]
    assert everything["total"] == 3

    energy = (await client.get("/api/improvements", params={"category": "energy"})).json()
    assert [i["id"] for i in energy["items"]] == [c.id, a.id]

    submitted_energy = (
        await client.get("/api/improvements", params={"category": "energy", "status": "submitted"})
    ).json()
    assert [i["title"] for i in submitted_energy["items"]] == ["One"]

    page = (await client.get("/api/improvements", params={"limit": 1, "offset": 1})).json()
    assert ([i["id"] for i in page["items"]], page["total"], page["limit"], page["offset"]) == (
        [b.id],
        3,
        1,
        1,
    )

    bad = await client.get("/api/improvements", params={"status": "lost", "limit": 0})
    assert bad.status_code == 422
    assert set(bad.json()["errors"]) == {"status", "limit"}


async def test_one_improvement_with_its_approvals_actions_and_history(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    bea = make_approver(session, "Bea Jones", category=Category.resource)
    carl = make_colleague(session, "Carl Obi")
    improvement = make_improvement(session, asha)
    move(
        session=session,
        improvement_id=improvement.id,
        to=Status.awaiting_approval,
        actor="route-improvement",
        channel="flow",
        reason="asked Bea Jones",
    )
    session.commit()
    approval, _ = approval_link(
        session,
        improvement,
        bea,
        on_behalf_of=carl,
        status=ApprovalStatus.approved,
        decided_at=utcnow() - timedelta(hours=1),
        comment="Yes",
    )
    action_link(session, improvement, carl, title="Tell the print room")

    response = await client.get(f"/api/improvements/{improvement.id}")

    assert response.status_code == 200
    body = response.json()
    assert body["reference"] == improvement.reference
    assert [
        (a["approver_name"], a["on_behalf_of_name"], a["status"], a["comment"])
        for a in body["approvals"]
    ] == [("Bea Jones", "Carl Obi", "approved", "Yes")]
    assert [(a["title"], a["owner_name"], a["status"]) for a in body["actions"]] == [
        ("Tell the print room", "Carl Obi", "open")
    ]
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in body["history"]] == [
        (None, "submitted", asha.email),
        ("submitted", "awaiting_approval", "route-improvement"),
    ]
    assert "token_hash" not in response.text


async def test_an_unknown_improvement_is_a_404_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/improvements/4242")

    assert response.status_code == 404
    assert response.json() == {"detail": "improvement IMP-4242 not found", "errors": {}}


async def test_unknown_api_paths_answer_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["detail"] == "Not Found"


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert {"/api/improvements", "/api/improvements/{improvement_id}", "/api/mail"} <= set(
        schema["paths"]
    )
    post = schema["paths"]["/api/improvements"]["post"]
    assert set(post["responses"]) >= {"201", "422"}
    [key] = [p for p in post["parameters"] if p["name"] == "Idempotency-Key"]
    [text] = [s for s in key["schema"]["anyOf"] if s["type"] == "string"]
    assert (key["in"], key["required"], text["maxLength"]) == ("header", False, 200)
    assert "Idempotent-Replayed" in post["responses"]["201"]["headers"]
    assert not any(p.startswith("/approvals") for p in schema["paths"])
    assert (await client.get("/docs")).status_code == 200


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --- Idempotency-Key: a retried POST makes one improvement ------------------------------------

IDEA = {"title": "Duplex printing by default", "category": "resource", "sheets_paper": 12000}


def _improvements(session: Session) -> list[Improvement]:
    session.expire_all()
    return list(session.exec(select(Improvement)).all())


async def test_a_retry_with_the_same_key_replays_the_first_answer_and_makes_nothing(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    headers = {"Idempotency-Key": "3f1c9a4e-retry-1"}
    first = await client.post("/api/improvements", json=IDEA, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    before = snapshot()

    again = await client.post("/api/improvements", json=IDEA, headers=headers)

    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert snapshot() == before
    assert [e[1] for e in events.emitted()] == [f"improve.improvement.{first.json()['id']}"]


async def test_the_same_key_with_another_body_is_a_422_naming_the_header(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    headers = {"Idempotency-Key": "retry-2"}
    first = await client.post("/api/improvements", json=IDEA, headers=headers)
    before = snapshot()

    other = await client.post(
        "/api/improvements", json={**IDEA, "sheets_paper": 1}, headers=headers
    )

    assert other.status_code == 422
    message = other.json()["errors"]["Idempotency-Key"]
    assert f"already used for IMP-{first.json()['id']}" in message
    assert snapshot() == before
    assert len(events.emitted()) == 1


async def test_without_a_key_each_post_makes_its_own_improvement(
    client: httpx.AsyncClient, session: Session
) -> None:
    for _ in range(2):
        assert (await client.post("/api/improvements", json=IDEA)).status_code == 201

    assert len(_improvements(session)) == 2


async def test_keys_are_per_caller(client: httpx.AsyncClient, session: Session) -> None:
    headers = {"Idempotency-Key": "my-first-idea"}
    mine = await client.post("/api/improvements", json=IDEA, headers=headers)
    asha = make_colleague(session, "Asha Patel")
    transport = httpx.ASGITransport(app=client._transport.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        sign_in(other, asha)
        theirs = await other.post("/api/improvements", json=IDEA, headers=headers)

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["submitter_id"] == asha.id


async def test_two_concurrent_posts_with_one_key_make_one_improvement(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    headers = {"Idempotency-Key": "double-send"}

    answers = await asyncio.gather(
        *(client.post("/api/improvements", json=IDEA, headers=headers) for _ in range(4))
    )

    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum("idempotent-replayed" in a.headers for a in answers) == 3
    assert len(_improvements(session)) == 1
    assert len(events.emitted()) == 1


async def test_a_post_that_loses_the_race_for_its_key_answers_with_the_winner(
    client: httpx.AsyncClient, session: Session, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministically what the concurrent test may or may not hit: the key was not there when
    this request looked, but another request committed it before this one could."""
    headers = {"Idempotency-Key": "the-race"}
    winner = await client.post("/api/improvements", json=IDEA, headers=headers)
    from web import views

    looked: list[int | None] = []

    def late_look(**kwargs: object) -> int | None:
        found = real_find(**kwargs)  # type: ignore[arg-type]
        looked.append(found)
        return None if len(looked) == 1 else found  # the first look came before the commit

    real_find = views.find_submission
    monkeypatch.setattr(views, "find_submission", late_look)
    before = snapshot()

    loser = await client.post("/api/improvements", json=IDEA, headers=headers)

    assert loser.status_code == 201, loser.text
    assert loser.json()["id"] == winner.json()["id"]
    assert loser.headers["idempotent-replayed"] == "true"
    assert looked == [winner.json()["id"]] * 2
    assert snapshot() == before
    assert len(events.emitted()) == 1


async def test_a_key_older_than_a_day_is_forgotten_and_may_be_used_again(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    headers = {"Idempotency-Key": "yesterday"}
    first = await client.post("/api/improvements", json=IDEA, headers=headers)
    row = session.exec(select(IdempotencyKey)).one()
    row.created_at = utcnow() - timedelta(hours=24, seconds=1)
    session.add(row)
    session.commit()

    again = await client.post("/api/improvements", json=IDEA, headers=headers)

    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    session.expire_all()
    [fresh] = session.exec(select(IdempotencyKey)).all()
    assert fresh.improvement_id == again.json()["id"]
    assert len(events.emitted()) == 2


@pytest.mark.parametrize("key", ["", "x" * 201, "has space", "tab\there", "café"])
async def test_a_malformed_key_is_a_422_naming_it(
    client: httpx.AsyncClient, session: Session, key: str
) -> None:
    before = snapshot()

    response = await client.post(
        "/api/improvements",
        json=IDEA,
        headers=[("Idempotency-Key", key.encode())],  # type: ignore[list-item]
    )

    assert response.status_code == 422, response.text
    assert any("Idempotency-Key" in field for field in response.json()["errors"])
    assert snapshot() == before
