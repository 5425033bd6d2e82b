"""Unsubscribe: GET asks, POST opts out; a mail client's RFC 8058 one-click POST works too."""

import httpx
from sqlmodel import Session, select

from models import CustomerConsent, Purpose
from tasks.consent import has_consent, queue_customer_email, unsubscribe_url
from tasks.outbox import send_due
from tests.factories import make_customer
from tests.smtpd import SmtpServer
from tests.web.helpers import snapshot


def _path(customer_id: int, purpose: Purpose) -> str:
    return unsubscribe_url(customer_id, purpose).removeprefix("http://127.0.0.1:8000")


async def test_get_asks_to_confirm_and_changes_nothing(
    client: httpx.AsyncClient, session: Session
) -> None:
    customer = make_customer(session, "Nia Brown")
    path = _path(customer.id, Purpose.improvement_updates)
    before = snapshot()

    response = await client.get(path)

    assert response.status_code == 200
    assert "Stop receiving updates about improvements" in response.text
    assert '<form method="post">' in response.text
    assert (await client.head(path)).status_code == 200
    assert snapshot() == before


async def test_confirming_opts_out_of_that_purpose_only(
    client: httpx.AsyncClient, session: Session
) -> None:
    customer = make_customer(session, consents=(Purpose.improvement_updates, Purpose.policy_news))

    response = await client.post(_path(customer.id, Purpose.improvement_updates))

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert not has_consent(session=session, customer_id=customer.id, purpose="improvement_updates")
    assert has_consent(session=session, customer_id=customer.id, purpose="policy_news")


async def test_one_click_post_from_a_mail_client(
    client: httpx.AsyncClient, session: Session
) -> None:
    customer = make_customer(session)
    path = _path(customer.id, Purpose.improvement_updates)

    first = await client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    again = await client.post(path, data={"List-Unsubscribe": "One-Click"})

    assert (first.status_code, again.status_code) == (200, 200)
    consents = session.exec(
        select(CustomerConsent).where(
            CustomerConsent.customer_id == customer.id,
            CustomerConsent.purpose == Purpose.improvement_updates,
        )
    ).all()
    assert [c.granted for c in consents] == [False]


async def test_an_edited_link_is_refused_without_saying_who_our_customers_are(
    client: httpx.AsyncClient, session: Session
) -> None:
    customer = make_customer(session)
    path = _path(customer.id, Purpose.improvement_updates)
    before = snapshot()

    other_customer = path.replace(
        f"/unsubscribe/{customer.id}/", f"/unsubscribe/{customer.id + 1}/"
    )
    other_purpose = path.replace("/improvement_updates/", "/policy_news/")
    unknown = path.replace("/improvement_updates/", "/everything/")
    for bad in (other_customer, other_purpose, unknown, path[:-2]):
        for method in ("GET", "POST"):
            response = await client.request(method, bad)
            assert response.status_code == 404, (method, bad)
            assert "This unsubscribe link is not valid" in response.text
    assert snapshot() == before


async def test_the_link_in_a_welsh_email_opts_out_in_one_click_and_speaks_welsh(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    nia = make_customer(session, "Nia Brown", language="cy")

    def notice(n: int) -> None:
        queue_customer_email(
            session=session, key=f"notice:{n}", customer=nia, template="customer_notice",
            context={"reference": f"IMP-{n}", "title": "Biliau"},
            purpose=Purpose.improvement_updates,
        )  # fmt: skip
        session.commit()

    notice(1)
    await send_due()
    [received] = smtp.received
    header = received.message["List-Unsubscribe"].strip().strip("<>")
    assert header in received.text and header in received.html  # the footer link is the same
    assert "Peidio â chael y negeseuon e-bost hyn" in received.html

    page = await client.get(header.removeprefix("http://127.0.0.1:8000"))
    assert '<html lang="cy">' in page.text and "Ydw, dad-danysgrifiwch fi" in page.text
    # What a mail client does with List-Unsubscribe-Post: one POST, no page seen.
    done = await client.post(
        header.removeprefix("http://127.0.0.1:8000"),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "Rydych wedi dad-danysgrifio" in done.text

    consent = session.exec(
        select(CustomerConsent)
        .where(
            CustomerConsent.customer_id == nia.id,
            CustomerConsent.purpose == Purpose.improvement_updates,
        )
        .execution_options(populate_existing=True)
    ).one()
    assert (consent.granted, consent.channel) == (False, "email")
    notice(2)
    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 0, "skipped": 1}
    assert len(smtp.received) == 1
