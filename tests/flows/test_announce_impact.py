"""announce-impact: the people an improvement touched are told once, and the UI shows the impact."""

from collections import Counter

from prefect.artifacts import Artifact
from sqlmodel import Session

from flows.announce_impact import announce_impact
from models import Category, ContactFormat, Purpose, Status
from tests.factories import make_colleague, make_customer, make_improvement, make_partner
from tests.flows.helpers import to
from tests.smtpd import SmtpServer


async def test_announcing_twice_tells_everyone_once(session: Session, smtp: SmtpServer) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    keen = make_customer(session, "Kim Keen")
    plain = make_customer(session, "Pat Plain", contact_format=ContactFormat.text)
    quiet = make_customer(session, "Quinn Quiet", consents=(Purpose.policy_news,))
    partner = make_partner(session, "Print & Post Ltd")
    improvement = make_improvement(
        session, submitter, title="Paperless statements", category=Category.resource,
        status=Status.completed, customers=[keen, plain, quiet], partners=[partner],
        annual_saving=4_000, measured_saving=3_500, kg_co2e=120, measured_kg_co2e=110,
    )  # fmt: skip

    told = await announce_impact(improvement.id)
    await announce_impact(improvement.id)  # the completion event, delivered twice

    assert (told["customers"], told["partners"], told["not_consented"]) == (2, 1, 1)
    assert max(Counter(m.message_id for m in smtp.received).values()) == 1
    assert len(to(smtp, keen.email)) == len(to(smtp, plain.email)) == 1
    assert to(smtp, quiet.email) == []
    assert len(to(smtp, partner.email)) == len(to(smtp, submitter.email)) == 1
    assert to(smtp, plain.email)[0].message.get_content_type() == "text/plain"
    assert to(smtp, keen.email)[0].message["List-Unsubscribe"]

    artifact = await Artifact.aget(f"impact-imp-{improvement.id}")
    assert artifact is not None and artifact.type == "markdown"
    assert "Paperless statements" in artifact.data
    assert "| Annual saving (£) | 4,000 | 3,500 |" in artifact.data


async def test_an_event_for_an_improvement_not_completed_announces_nothing_and_fails_nothing(
    session: Session, smtp: SmtpServer
) -> None:
    """As after an outage, when a Prefect client sends again an event the lost server never
    confirmed: the run ends well, and nobody is told anything."""
    submitter = make_colleague(session, "Sam Submitter")
    improvement = make_improvement(session, submitter, status=Status.in_progress)

    told = await announce_impact(improvement.id, return_state=True)

    assert told.is_completed() and await told.result() == {"announced": 0}
    assert smtp.received == []
