"""The public impact report: a page anyone may open, its charts as PNGs with alt text and the
numbers beside them, and the stakeholders' unsubscribe link (GET shows, POST acts)."""

import re
from datetime import timedelta

import httpx
from sqlmodel import Session, select

from models import Category, OutboxEmail, OutboxStatus, Stakeholder
from models.db import utcnow
from tasks.charts import PNG_SIGNATURE
from tasks.report import queue_reports, week_of
from tasks.stakeholders import unsubscribe_url
from tests.factories import make_colleague
from tests.tasks.awareness_helpers import completed
from tests.web.helpers import snapshot


def _done(session: Session) -> None:
    asha = make_colleague(session, "Asha Patel")
    completed(
        session, asha, "Smart meters", Category.energy, utcnow() - timedelta(days=1),
        kg_co2e=1000, annual_saving=500, measured_kg_co2e=1234, measured_saving=456,
    )  # fmt: skip


async def test_anyone_reads_the_report_with_charts_and_their_numbers_beside_them(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    _done(session)

    answer = await anonymous.get("/impact")

    assert answer.status_code == 200
    assert "public" in answer.headers["cache-control"]
    html = answer.text
    images = re.findall(r'<img src="(/impact/charts/[a-z0-9-]+\.png)" alt="([^"]+)"', html)
    assert len(images) == 6
    alts = dict(images)
    assert "1,234 kg CO2e" in alts["/impact/charts/kg-co2e-by-category.png"]
    assert "Energy: forecast £500, actual £456" in alts["/impact/charts/saving-forecast-actual.png"]
    assert "<td>1,234</td>" in html and "<td>£456</td>" in html  # the tables beside them
    assert "1,234 kg CO2e" in html  # the total

    for src, _ in images:
        png = await anonymous.get(src)
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == PNG_SIGNATURE
    missing = await anonymous.get("/impact/charts/nothing.png")
    assert missing.status_code == 404 and "chart nothing not found" in missing.text


async def test_a_stakeholder_unsubscribes_from_the_emailed_link_and_a_forged_one_is_refused(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    council = Stakeholder(name="Town council", email="clerk@council.example")
    charity = Stakeholder(name="Green Valley Trust", email="hello@trust.example")
    session.add_all([council, charity])
    session.commit()
    queue_reports(session=session, period=week_of(utcnow().date())[0])
    session.commit()
    url = unsubscribe_url(council.id).removeprefix("http://127.0.0.1:8000")
    before = snapshot()

    shown = await anonymous.get(url)  # a mail scanner, or the person: nothing changes yet
    assert shown.status_code == 200 and "Stop receiving our impact report?" in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert snapshot() == before
    forged = await anonymous.post(url.replace(f"/{council.id}/", f"/{charity.id}/"))
    assert forged.status_code == 404 and "not valid" in forged.text
    assert snapshot() == before

    done = await anonymous.post(url)

    assert done.status_code == 200 and "You are unsubscribed" in done.text
    session.expire_all()
    assert session.get(Stakeholder, council.id).subscribed is False
    assert session.get(Stakeholder, charity.id).subscribed is True
    statuses = {r.recipient: r.status for r in session.exec(select(OutboxEmail)).all()}
    assert statuses == {council.email: OutboxStatus.skipped, charity.email: OutboxStatus.queued}
    assert (await anonymous.post(url)).status_code == 200  # again: still unsubscribed, no error
