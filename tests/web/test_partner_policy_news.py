"""A partner's agreement to hear of policy changes: recorded by operations on the partner page,
and stopped by the partner from the link in a notice (GET shows, POST stops, one click too)."""

import httpx
from sqlmodel import Session, select

from models import OutboxEmail, OutboxStatus, Partner
from tasks.policies import add_policy, partner_stop_url, publish
from tests.factories import make_colleague, make_partner
from tests.web.conftest import sign_in
from tests.web.helpers import snapshot


async def test_operations_record_that_a_partner_agreed(
    client: httpx.AsyncClient, session: Session
) -> None:
    inkwell = make_partner(session, "Inkwell Print")

    page = await client.get(f"/partners/{inkwell.id}")
    assert "Does not hear of them" in page.text
    assert "They agreed to hear of policy changes" in page.text
    done = await client.post(f"/partners/{inkwell.id}/policies", data={"hears": "yes"})
    assert done.status_code == 303
    page = await client.get(f"/partners/{inkwell.id}")
    assert "Hears of them: agreed to" in page.text

    bad = await client.post(f"/partners/{inkwell.id}/policies", data={"hears": "maybe"})
    assert bad.status_code == 422 and "say yes or no" in bad.text


async def test_a_colleague_outside_operations_sees_it_and_may_not_change_it(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    inkwell = make_partner(session, "Inkwell Print", hears_policies=True)
    sign_in(anonymous, make_colleague(session, "Kit Noble"))
    before = snapshot()

    page = await anonymous.get(f"/partners/{inkwell.id}")
    assert page.status_code == 200 and "Hears of them: agreed to" in page.text
    assert "They no longer want policy news" not in page.text
    refused = await anonymous.post(f"/partners/{inkwell.id}/policies", data={"hears": "no"})
    assert refused.status_code == 403 and "Only operations" in refused.text
    assert snapshot() == before


async def test_a_partner_stops_from_the_emailed_link_and_a_forged_one_is_refused(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    inkwell = make_partner(session, "Inkwell Print", hears_policies=True)
    swift = make_partner(session, "Swift Parcels", hears_policies=True)
    owner = make_colleague(session, "Priya Shah")
    policy = add_policy(
        session=session, title="Paperless", summary="", link="", owner_email=owner.email,
        processes=[],
    )  # fmt: skip
    publish(session=session, policy_id=policy.id, version="1", changes="New.", actor="ops")
    session.commit()
    url = partner_stop_url(inkwell.id).removeprefix("http://127.0.0.1:8000")
    before = snapshot()

    shown = await anonymous.get(url)  # a mail scanner, or the person: nothing changes yet
    assert shown.status_code == 200 and "news of our policies" in shown.text
    assert snapshot() == before
    forged = await anonymous.post(url.replace(f"/{inkwell.id}/", f"/{swift.id}/"))
    assert forged.status_code == 404 and "not valid" in forged.text
    assert snapshot() == before

    done = await anonymous.post(url)  # the confirm button, or a mail client's one-click POST

    assert done.status_code == 200
    session.expire_all()
    assert [p.hears_policies for p in session.exec(select(Partner).order_by(Partner.id))] == [
        False,
        True,
    ]
    statuses = {r.recipient: r.status for r in session.exec(select(OutboxEmail)).all()}
    assert statuses == {inkwell.email: OutboxStatus.skipped, swift.email: OutboxStatus.queued}
    assert (await anonymous.post(url)).status_code == 200  # again: still stopped, no error
