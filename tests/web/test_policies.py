"""The policy library's pages and API: the library, a policy with its notices, publishing by role,
links, the process and improvement pages, bad input named, strangers refused."""

import httpx
import pytest
from sqlmodel import Session, select

from models import (
    Access,
    Colleague,
    Customer,
    OutboxEmail,
    Partner,
    Policy,
    Purpose,
    ServiceProcess,
)
from models.db import session_scope
from tasks.policies import add_policy, link_improvement, publish
from tests.factories import (
    make_colleague,
    make_customer,
    make_improvement,
    make_partner,
    make_process,
)
from tests.web.conftest import sign_in
from tests.web.helpers import snapshot


@pytest.fixture
def paperless(session: Session) -> Policy:
    """ "Paperless by default", owned by Priya, touching billing; two subscribers and one not."""
    priya = make_colleague(session, "Priya Shah", email="priya@brightwater.example")
    make_process(session, "billing")
    make_process(session, "deliveries")
    make_customer(session, "Ann Hughes", consents=(Purpose.policy_news,))
    make_customer(session, "Bo Quiet", consents=())
    make_partner(session, "Inkwell Print", hears_policies=True)
    policy = add_policy(
        session=session,
        title="Paperless by default",
        summary="Statements go by email unless a customer asks for paper.",
        link="https://brightwater.example/policies/paperless",
        owner_email=priya.email,
        processes=["billing"],
    )
    session.commit()
    return policy


def _emails(session: Session) -> list[str]:
    return sorted(session.exec(select(OutboxEmail.recipient)).all())


async def test_the_library_lists_each_policy_with_its_version_owner_and_processes(
    client: httpx.AsyncClient, paperless: Policy
) -> None:
    answer = await client.get("/policies")

    assert answer.status_code == 200
    text = answer.text
    assert f'href="/policies/{paperless.id}"' in text and "Paperless by default" in text
    assert "draft" in text and "Priya Shah" in text and ">billing</a>" in text
    assert "1 customer who agreed to policy news and 1 partner" in text
    assert 'href="/policies" aria-current="page"' in text  # in the staff navigation


async def test_publishing_from_the_page_queues_one_notice_each_and_shows_progress(
    client: httpx.AsyncClient, paperless: Policy, session: Session
) -> None:
    form = {"version": "2.0", "changes": "Paper statements now need a request."}
    answer = await client.post(f"/policies/{paperless.id}/versions", data=form)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/policies/{paperless.id}?done=published"
    ann = session.exec(select(Customer.email).where(Customer.name == "Ann Hughes")).one()
    inkwell = session.exec(select(Partner.email).where(Partner.name == "Inkwell Print")).one()
    assert _emails(session) == sorted([ann, inkwell])  # not Bo, who did not agree

    again = await client.post(f"/policies/{paperless.id}/versions", data=form)
    assert again.status_code == 409
    assert "version 2.0 of &#39;Paperless by default&#39; was published on" in again.text
    assert len(_emails(session)) == 2

    shown = (await client.get(f"/policies/{paperless.id}")).text
    assert "Version 2.0, published" in shown
    assert "Paper statements now need a request." in shown
    row = shown[shown.index("<td>2.0</td>") : shown.index("</tr>", shown.index("<td>2.0</td>"))]
    assert row.count('<td class="num">2</td>') == 1  # two queued, nothing else yet


async def test_a_colleague_who_is_not_the_owner_may_not_publish(
    anonymous: httpx.AsyncClient, paperless: Policy
) -> None:
    with session_scope() as session:
        someone = make_colleague(session, "Kit Noble")
        owner = session.get(Colleague, paperless.owner_id)
    sign_in(anonymous, someone)
    page = await anonymous.get(f"/policies/{paperless.id}")
    assert "Only the policy's owner or operations may publish it." in page.text
    before = snapshot()
    refused = await anonymous.post(
        f"/policies/{paperless.id}/versions", data={"version": "2", "changes": "x"}
    )
    assert refused.status_code == 403 and "owner or operations" in refused.text
    assert snapshot() == before

    assert owner is not None and owner.access == Access.colleague
    sign_in(anonymous, owner)
    answer = await anonymous.post(
        f"/policies/{paperless.id}/versions", data={"version": "2", "changes": "x"}
    )
    assert answer.status_code == 303  # the owner may, without the operations role


async def test_adding_from_the_form_names_bad_fields_and_keeps_what_was_typed(
    client: httpx.AsyncClient, paperless: Policy
) -> None:
    before = snapshot()
    answer = await client.post(
        "/policies",
        data={
            "title": "Paperless by default",
            "link": "ftp://x",
            "owner_email": "nobody@example.org",
            "processes": "billing, laundry",
        },
    )
    assert answer.status_code == 422
    assert "must be a web address" in answer.text
    assert "no colleague has the email &#39;nobody@example.org&#39;" in answer.text
    assert "no service process is called &#39;laundry&#39;" in answer.text
    assert 'value="billing, laundry"' in answer.text
    assert snapshot() == before

    made = await client.post(
        "/policies", data={"title": "Sustainable fleet", "processes": "deliveries"}
    )
    assert made.status_code == 303 and made.headers["location"].endswith("?done=added")


async def test_processes_and_improvements_are_linked_and_shown_on_their_pages(
    client: httpx.AsyncClient, paperless: Policy, session: Session
) -> None:
    improvement = make_improvement(session, None, "E-statements for all")
    answer = await client.post(
        f"/policies/{paperless.id}/links",
        data={"processes": "deliveries", "improvement": f"IMP-{improvement.id}"},
    )
    assert answer.status_code == 303

    shown = (await client.get(f"/policies/{paperless.id}")).text
    assert ">deliveries</a>" in shown and "E-statements for all" in shown
    process = (await client.get(f"/processes/{_process_id(session, 'deliveries')}")).text
    assert "Policies it serves" in process and "Paperless by default" in process
    assert "Footprint in" in process  # beside it
    imp_page = (await client.get(f"/improvements/{improvement.id}")).text
    assert f'href="/policies/{paperless.id}">Paperless by default</a>' in imp_page

    missing = await client.post(f"/policies/{paperless.id}/links", data={"improvement": "IMP-999"})
    assert missing.status_code == 422 and "IMP-999 not found" in missing.text


def _process_id(session: Session, name: str) -> int:
    found = session.exec(select(ServiceProcess.id).where(ServiceProcess.name == name)).one()
    assert found is not None
    return found


async def test_the_api_adds_lists_reads_and_publishes(
    client: httpx.AsyncClient, paperless: Policy, session: Session
) -> None:
    made = await client.post(
        "/api/policies",
        json={"title": "Waste and recycling", "owner_email": "priya@brightwater.example",
              "processes": ["billing", "deliveries"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["version"] == "" and body["owner_name"] == "Priya Shah"
    assert body["processes"] == ["billing", "deliveries"]
    assert made.headers["location"] == f"/api/policies/{body['id']}"

    listed = (await client.get("/api/policies")).json()
    assert [p["title"] for p in listed["items"]] == ["Paperless by default", "Waste and recycling"]
    assert listed["subscribers"] == {"customers": 1, "partners": 1}

    published = await client.post(
        f"/api/policies/{paperless.id}/versions", json={"version": "1.1", "changes": "Clearer."}
    )
    assert published.status_code == 201, published.text
    out = published.json()
    assert out["version"] == "1.1" and out["queued"] == 2
    assert out["notices"]["queued"] == 2 and out["notices"]["sent"] == 0

    read = (await client.get(f"/api/policies/{paperless.id}")).json()
    assert read["version"] == "1.1"
    assert [v["version"] for v in read["versions"]] == ["1.1"]
    assert read["versions"][0]["notices"]["total"] == 2


async def test_the_api_names_bad_fields_and_conflicts(
    client: httpx.AsyncClient, paperless: Policy, session: Session
) -> None:
    before = snapshot()
    taken = await client.post("/api/policies", json={"title": "Paperless by default"})
    assert taken.status_code == 409 and "title" in taken.json()["errors"]
    unknown = await client.post("/api/policies", json={"title": "X", "processes": ["laundry"]})
    assert unknown.status_code == 422 and "processes" in unknown.json()["errors"]
    missing = await client.post(f"/api/policies/{paperless.id}/versions", json={"version": "2"})
    assert missing.status_code == 422 and missing.json()["errors"] == {"changes": "is required"}
    bad = await client.post(
        f"/api/policies/{paperless.id}/versions", json={"version": "two oh", "changes": "x"}
    )
    assert bad.status_code == 422 and "version" in bad.json()["errors"]
    nothing = await client.get("/api/policies/999")
    assert nothing.status_code == 404 and nothing.json()["detail"] == "policy 999 not found"
    assert snapshot() == before

    publish(session=session, policy_id=paperless.id, version="2", changes="x", actor="ops")
    session.commit()
    again = await client.post(
        f"/api/policies/{paperless.id}/versions", json={"version": "2", "changes": "x"}
    )
    assert again.status_code == 409
    assert again.json()["errors"]["version"].startswith("version 2 of 'Paperless by default'")


async def test_a_stranger_reaches_no_policy_page_or_route(
    anonymous: httpx.AsyncClient, paperless: Policy, session: Session
) -> None:
    link_improvement(
        session=session,
        policy_id=paperless.id,
        improvement_id=make_improvement(session, None, "Anything").id,
    )
    session.commit()
    before = snapshot()
    for method, path in [
        ("GET", "/policies"),
        ("GET", f"/policies/{paperless.id}"),
        ("GET", "/api/policies"),
        ("GET", f"/api/policies/{paperless.id}"),
    ]:
        answer = await anonymous.request(method, path)
        assert answer.status_code in (303, 401), path
        assert "Paperless" not in answer.text
    refused = await anonymous.post(
        f"/api/policies/{paperless.id}/versions", json={"version": "9", "changes": "x"}
    )
    assert refused.status_code == 401
    assert snapshot() == before
