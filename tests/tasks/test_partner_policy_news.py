"""Partners: added, their agreement to hear of policy changes recorded, and their own signed link
in each notice to stop (the notice's List-Unsubscribe too)."""

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput, LinkRefused
from models import OutboxEmail, OutboxStatus, Partner
from tasks.outbox import send_due
from tasks.partners import add_partner, partner_by_email, set_hears_policies
from tasks.policies import add_policy, check_partner_stop, partner_stop_url, publish
from tests.factories import make_colleague, make_partner
from tests.smtpd import SmtpServer


def _publish(session: Session, version: str = "1") -> None:
    owner = make_colleague(session, "Priya Shah")
    found = add_policy(
        session=session, title=f"Paperless {version}", summary="", link="",
        owner_email=owner.email, processes=[],
    )  # fmt: skip
    publish(session=session, policy_id=found.id, version=version, changes="New.", actor="ops")
    session.commit()


def test_a_partner_is_added_once_with_what_they_agreed_to(session: Session) -> None:
    partner = add_partner(
        session=session, name="  Inkwell   Print ", email="Lin@Inkwell.example",
        contact_name="Lin Bo", hears_policies=True,
    )  # fmt: skip
    session.commit()

    assert (partner.name, partner.email, partner.hears_policies) == (
        "Inkwell Print", "lin@inkwell.example", True,
    )  # fmt: skip
    assert partner_by_email(session=session, email="LIN@inkwell.example").id == partner.id
    with pytest.raises(InvalidInput) as twice:
        add_partner(session=session, name="Inkwell again", email="lin@inkwell.example")
    assert "already there" in twice.value.errors["email"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": " ", "email": "a@example.net"}, "name"),
        ({"name": "A", "email": "not an address"}, "email"),
        ({"name": "A", "email": "a@example.net\nBcc: b@example.net"}, "email"),
        ({"name": "A\x00", "email": "a@example.net"}, "name"),
        ({"name": "A", "email": "a\x00@example.net"}, "email"),
        ({"name": "x" * 121, "email": "a@example.net"}, "name"),
    ],
)
def test_bad_partner_details_are_named_and_nothing_is_stored(
    session: Session, fields: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        add_partner(session=session, **fields)
    assert named in refused.value.errors
    session.rollback()
    assert session.exec(select(Partner)).all() == []


async def test_the_notice_carries_the_partners_own_stop_link_and_the_header(
    session: Session, smtp: SmtpServer
) -> None:
    inkwell = make_partner(session, "Inkwell Print", hears_policies=True)
    _publish(session)

    await send_due()

    [received] = smtp.received
    url = partner_stop_url(inkwell.id)
    assert received.message["List-Unsubscribe"] == f"<{url}>"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in received.text and url in received.html
    # Once sent, the row forgets the link (a copy of the database opens nothing).
    (row,) = session.exec(select(OutboxEmail)).all()
    session.refresh(row)
    assert url not in str(row.context)


def test_the_stop_link_is_bound_to_its_partner(session: Session) -> None:
    inkwell = make_partner(session, "Inkwell Print", hears_policies=True)
    swift = make_partner(session, "Swift Parcels", hears_policies=True)
    token = partner_stop_url(inkwell.id).rsplit("/", 1)[1]

    assert check_partner_stop(session=session, partner_id=inkwell.id, token=token) == inkwell
    for partner_id, offered in ((swift.id, token), (inkwell.id, token[:-1]), (999, token)):
        with pytest.raises(LinkRefused) as refused:
            check_partner_stop(session=session, partner_id=partner_id, token=offered)
        assert refused.value.status_code == 404


def test_a_partner_who_stops_hears_of_no_more_versions_and_waiting_notices_are_skipped(
    session: Session,
) -> None:
    inkwell = make_partner(session, "Inkwell Print", hears_policies=True)
    swift = make_partner(session, "Swift Parcels", hears_policies=True)
    _publish(session, "1")

    set_hears_policies(session=session, partner_id=inkwell.id, hears=False)
    set_hears_policies(session=session, partner_id=inkwell.id, hears=False)  # says it again
    session.commit()
    _publish(session, "2")

    rows = session.exec(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert [(r.recipient, r.status) for r in rows] == [
        (inkwell.email, OutboxStatus.skipped),  # version 1, waiting when they stopped
        (swift.email, OutboxStatus.queued),  # version 1
        (swift.email, OutboxStatus.queued),  # version 2: Inkwell no longer hears
    ]
    session.refresh(inkwell)
    assert inkwell.hears_policies is False

    set_hears_policies(session=session, partner_id=inkwell.id, hears=True)  # agreed again
    session.commit()
    _publish(session, "3")
    assert [r.status for r in session.exec(select(OutboxEmail).where(
        OutboxEmail.recipient == inkwell.email)).all()] == [
        OutboxStatus.skipped, OutboxStatus.queued,
    ]  # fmt: skip
