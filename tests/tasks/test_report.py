"""The impact report: measured totals as of a moment, month by month in the organisation's time
zone, by category, forecast against actual; its charts; emailed to stakeholders once a week."""

import struct
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput, LinkRefused
from models import (
    Category,
    Invitation,
    InvitationStatus,
    OutboxEmail,
    OutboxStatus,
    Stakeholder,
    Status,
)
from tasks.charts import PNG_SIGNATURE
from tasks.mail import INLINE_IMAGES, build_message
from tasks.outbox import send_due
from tasks.participation import create_initiative, invite
from tasks.report import impact_report, queue_reports, week_named
from tasks.stakeholders import unsubscribe, unsubscribe_url
from tests.factories import make_colleague, make_improvement, make_partner
from tests.smtpd import SmtpServer
from tests.tasks.awareness_helpers import completed

LONDON = ZoneInfo("Europe/London")
UNTIL = datetime(2026, 6, 15, tzinfo=LONDON)  # the end of ISO week 2026-W24


def _improvements(session: Session) -> None:
    asha = make_colleague(session, "Asha Patel")
    completed(
        session, asha, "Smart meters in the depot", Category.energy,
        datetime(2026, 6, 3, 10, tzinfo=UTC),
        kg_co2e=1000, annual_saving=500, measured_kg_co2e=1200, measured_saving=400,
        measured_kwh=5000,
    )  # fmt: skip
    completed(
        session, asha, "Reusable crates", Category.waste, datetime(2026, 4, 10, tzinfo=UTC),
        kg_co2e=300, annual_saving=200, measured_kg_co2e=250, measured_saving=260,
        measured_kg_waste=80,
    )  # fmt: skip
    # 00:30 on 1 June in London: June's, though it is still May in UTC.
    completed(
        session, asha, "Duplex printing", Category.resource,
        datetime(2026, 5, 31, 23, 30, tzinfo=UTC), measured_kg_co2e=10, measured_sheets_paper=4000,
    )  # fmt: skip
    # Over a year before: in the totals, not in the twelve months.
    completed(
        session, asha, "LED lighting", Category.energy, datetime(2025, 5, 20, tzinfo=UTC),
        kg_co2e=90, annual_saving=60, measured_kg_co2e=100, measured_saving=50,
    )  # fmt: skip
    # After the report's end, and not completed at all: neither counts.
    completed(
        session, asha, "Heat pumps", Category.energy, datetime(2026, 6, 20, tzinfo=UTC),
        kg_co2e=9000, measured_kg_co2e=9000,
    )  # fmt: skip
    make_improvement(
        session, asha, title="Still going", category=Category.energy, status=Status.in_progress,
        measured_kg_co2e=777,
    )  # fmt: skip


def test_the_report_totals_what_was_measured_by_month_and_category_against_the_forecast(
    session: Session,
) -> None:
    _improvements(session)

    report = impact_report(session=session, until=UNTIL.astimezone(UTC))

    assert report.improvements == 4
    assert report.totals == {
        "kg_co2e": 1560, "kwh": 5000, "kg_waste": 80, "sheets_paper": 4000, "saving": 710,
    }  # fmt: skip
    assert [m["label"] for m in report.months][:: len(report.months) - 1] == [
        "Jul 2025",
        "Jun 2026",
    ]
    assert len(report.months) == 12
    by_month = {m["label"]: m for m in report.months if m["improvements"]}
    assert by_month == {
        "Apr 2026": {"month": "2026-04", "label": "Apr 2026", "improvements": 1,
                     "kg_co2e": 250, "saving": 260},
        "Jun 2026": {"month": "2026-06", "label": "Jun 2026", "improvements": 2,
                     "kg_co2e": 1210, "saving": 400},
    }  # fmt: skip
    by_category = {
        c["category"]: (c["improvements"], c["kg_co2e"], c["saving"]) for c in report.categories
    }
    assert by_category == {"energy": (2, 1300, 450), "waste": (1, 250, 260), "resource": (1, 10, 0)}
    energy = next(f for f in report.forecast if f["category"] == "energy")
    assert (energy["kg_co2e"]["forecast"], energy["kg_co2e"]["actual"]) == (1090, 1300)
    assert (energy["saving"]["forecast"], energy["saving"]["actual"]) == (560, 450)
    assert energy["kg_co2e"]["variance"] == 210


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIGNATURE
    assert png[12:16] == b"IHDR"  # the first chunk, which holds width and height
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_each_chart_is_a_png_whose_alt_text_carries_its_numbers(session: Session) -> None:
    _improvements(session)

    charts = {c.name: c for c in impact_report(session=session, until=UNTIL).charts()}

    assert list(charts) == [
        "kg-co2e-by-month", "saving-by-month", "kg-co2e-by-category", "saving-by-category",
        "kg-co2e-forecast-actual", "saving-forecast-actual",
    ]  # fmt: skip
    for chart in charts.values():
        assert _png_size(chart.png) == (544, 272)
        assert len(chart.png) > 2000  # drawn, not blank
    assert "Jun 2026: 1,210 kg CO2e" in charts["kg-co2e-by-month"].alt
    assert "Apr 2026: £260" in charts["saving-by-month"].alt
    assert "Energy: 1,300 kg CO2e" in charts["kg-co2e-by-category"].alt
    assert "Energy: forecast 1,090 kg CO2e, actual 1,300 kg CO2e" in (
        charts["kg-co2e-forecast-actual"].alt
    )
    again = impact_report(session=session, until=UNTIL).charts()
    assert [c.png for c in again] == [c.png for c in charts.values()]  # the same bytes


def _stakeholders(session: Session) -> tuple[Stakeholder, Stakeholder]:
    council = Stakeholder(
        name="Town council", email="clerk@council.example", organisation="Council"
    )
    charity = Stakeholder(name="Green Valley Trust", email="hello@trust.example")
    gone = Stakeholder(name="Left us", email="gone@example.org", subscribed=False)
    session.add_all([council, charity, gone])
    session.commit()
    return council, charity


async def test_each_subscribed_stakeholder_gets_the_report_once_a_week_with_charts_inline(
    session: Session, smtp: SmtpServer
) -> None:
    _improvements(session)
    council, charity = _stakeholders(session)

    assert queue_reports(session=session, period="2026-W24") == {"stakeholders": 2, "queued": 2}
    session.commit()
    assert queue_reports(session=session, period="2026-W24") == {"stakeholders": 2, "queued": 0}
    rows = session.exec(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert [r.idempotency_key for r in rows] == [
        f"report:2026-W24:stakeholder:{council.id}", f"report:2026-W24:stakeholder:{charity.id}",
    ]  # fmt: skip

    assert (await send_due())["sent"] == 2
    [email] = [m for m in smtp.received if council.email in m.recipients]
    message: EmailMessage = email.message
    assert email.subject == (
        "Our environmental impact: 1,560 kg CO2e and £710 saved a year (2026-W24)"
    )
    assert message["List-Unsubscribe"] == f"<{unsubscribe_url(council.id)}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 6
    related = next(p for p in message.walk() if p.get_content_type() == "multipart/related")
    assert related.get_payload()[0].get_content_type() == "text/html"
    cids = {p["Content-ID"].strip("<>") for p in images}
    for image in images:
        assert image.get_content()[:8] == PNG_SIGNATURE
    html = email.html
    for cid in cids:
        assert f'src="cid:{cid}"' in html
    assert 'alt="Bar chart, kg CO2e saved a year, by month completed.' in html
    assert "Jun 2026: 1,210 kg CO2e" in html  # in the alt text
    assert ">1,210</td>" in html  # and in the table beside it
    assert "Jun 2026: 2 completed, 1,210 kg CO2e, £400" in email.text
    assert "Energy: forecast 1,090 kg CO2e, actual 1,300 kg CO2e; forecast £560, actual £450" in (
        email.text
    )
    # Once sent, a row forgets its charts (they are in the email) and keeps the rest.
    for row in rows:
        session.refresh(row)
        assert INLINE_IMAGES not in row.context and row.context["period"] == "2026-W24"


def test_the_report_says_who_took_part_in_each_initiative(session: Session) -> None:
    owner = make_colleague(session, "Priya Owner")
    assert owner.id is not None
    initiative = create_initiative(
        session=session, title="Consolidated deliveries", owner_id=owner.id
    )
    partners = [make_partner(session, f"Carrier {n}") for n in range(3)]
    assert initiative.id is not None
    invite(
        session=session, initiative_id=initiative.id, partner_ids=[p.id for p in partners if p.id]
    )
    answered = session.exec(select(Invitation)).all()
    answered[0].status, answered[1].status = InvitationStatus.accepted, InvitationStatus.declined
    session.add_all(answered[:2])
    session.commit()

    report = impact_report(session=session, until=datetime.now(UTC))

    [took_part] = report.participation
    assert (took_part["title"], took_part["invited"], took_part["accepted"]) == (
        "Consolidated deliveries",
        3,
        1,
    )
    assert (took_part["declined"], took_part["waiting"]) == (1, 1)
    session.add(Stakeholder(name="Council", email="council@example.org"))
    session.commit()
    queue_reports(session=session, period="2026-W24")
    [row] = session.exec(select(OutboxEmail).where(OutboxEmail.template == "impact_report")).all()
    text = build_message(row, None).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Consolidated deliveries: 3 invited, 1 took part, 1 declined, 1 not answered yet" in text


def test_a_bad_period_is_refused_by_name_and_queues_nothing(session: Session) -> None:
    _stakeholders(session)

    for period in ("2026-24", "2026-W54", "last week"):
        with pytest.raises(InvalidInput) as refused:
            queue_reports(session=session, period=period)
        assert "period" in refused.value.errors
    assert session.exec(select(OutboxEmail)).all() == []
    assert week_named("2026-W01")[0] == "2026-W01"


def test_a_stakeholder_unsubscribes_by_the_signed_link_and_the_waiting_report_stays(
    session: Session,
) -> None:
    council, charity = _stakeholders(session)
    queue_reports(session=session, period="2026-W24")
    session.commit()

    with pytest.raises(LinkRefused):
        unsubscribe(
            session=session,
            stakeholder_id=charity.id,
            token=unsubscribe_url(council.id).rsplit("/", 1)[1],
        )
    unsubscribe(
        session=session,
        stakeholder_id=council.id,
        token=unsubscribe_url(council.id).rsplit("/", 1)[1],
    )
    session.commit()

    assert session.get(Stakeholder, council.id).subscribed is False
    statuses = {r.recipient: r.status for r in session.exec(select(OutboxEmail)).all()}
    assert statuses == {council.email: OutboxStatus.skipped, charity.email: OutboxStatus.queued}
    assert queue_reports(session=session, period="2026-W25") == {"stakeholders": 1, "queued": 1}
    assert (
        build_message(
            session.exec(
                select(OutboxEmail).where(
                    OutboxEmail.idempotency_key == f"report:2026-W25:stakeholder:{charity.id}"
                )
            ).one()
        )["To"]
        == charity.email
    )
