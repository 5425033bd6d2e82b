"""A policy change on the running stack: published through the API, its notices sent by the
sweep to each consenting customer (in their language) and each partner who hears, exactly once,
and to nobody else; a second version tells each of them once more."""

import httpx
import pytest
from sqlmodel import Session

from models import Purpose
from tests.e2e.helpers import mail_to, run_sweep
from tests.factories import make_colleague, make_customer, make_partner, make_process
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e


async def test_each_subscriber_hears_of_each_version_once(
    web: httpx.Client, session: Session, smtp: SmtpServer
) -> None:
    owner = make_colleague(session, "Priya Shah")
    make_process(session, "billing")
    ann = make_customer(session, "Ann Hughes", consents=(Purpose.policy_news,))
    rhys = make_customer(session, "Rhys Jones", consents=(Purpose.policy_news,), language="cy")
    bo = make_customer(session, "Bo Quiet", consents=(Purpose.improvement_updates,))
    inkwell = make_partner(session, "Inkwell Print", hears_policies=True)
    deaf = make_partner(session, "Deaf Freight")

    made = web.post(
        "/api/policies",
        json={"title": "Paperless by default", "owner_email": owner.email,
              "summary": "Email first.", "link": "https://brightwater.example/paperless",
              "processes": ["billing"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    policy_id = made.json()["id"]

    first = web.post(
        f"/api/policies/{policy_id}/versions",
        json={"version": "1.0", "changes": "Statements go by email unless you ask for paper."},
    )
    assert first.status_code == 201, first.text
    assert first.json()["queued"] == 3
    await run_sweep()
    await run_sweep()  # a second sweep finds nothing more to send

    def received() -> dict[str, int]:
        every = (ann.email, rhys.email, bo.email, inkwell.email, deaf.email)
        return {address: len(mail_to(smtp, address, "Paperless by default")) for address in every}

    assert received() == {ann.email: 1, rhys.email: 1, bo.email: 0, inkwell.email: 1, deaf.email: 0}
    [welsh] = mail_to(smtp, rhys.email)
    assert welsh.subject.startswith("Mae ein polisi wedi newid: Paperless by default")
    [english] = mail_to(smtp, ann.email)
    assert "Statements go by email unless you ask for paper." in english.text
    assert english.message["List-Unsubscribe"] is not None
    notices = web.get(f"/api/policies/{policy_id}").json()["versions"][0]["notices"]
    assert notices["sent"] == 3 and notices["total"] == 3

    again = web.post(
        f"/api/policies/{policy_id}/versions", json={"version": "1.0", "changes": "Again."}
    )
    assert again.status_code == 409
    second = web.post(
        f"/api/policies/{policy_id}/versions", json={"version": "1.1", "changes": "Clearer."}
    )
    assert second.status_code == 201, second.text
    await run_sweep()

    assert received() == {ann.email: 2, rhys.email: 2, bo.email: 0, inkwell.email: 2, deaf.email: 0}
    assert len({m.message_id for m in smtp.received}) == len(smtp.received) == 6
