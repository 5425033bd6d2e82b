"""Service records to a measured result on the running stack: a CSV with some bad rows is
imported (twice), the service review finds customers still on paper and proposes an improvement
with its estimate and evidence (once, however often it runs), the approver decides from the email,
the owner follows the plan's emails and records the measured activity, forecast and actual stand
side by side on the improvement's page, the dashboard and the API, and the week's impact digest
tells a stakeholder and the colleague, charts and all."""

import csv
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import arun_deployment
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from improve.cli import app
from improve.formatting import quantity
from improve.stack import Stack
from models import Category, Evidence, Improvement, ServiceRecord, Source, Stakeholder
from models.db import utcnow
from tests.e2e.helpers import (
    DEADLINE,
    browser_of,
    eventually,
    links,
    mail_to,
    wait_for_mail,
    wait_for_runs,
)
from tests.factories import make_approver, make_customer
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e
LETTER = 0.015 * 1345.0779 / 1000  # kg CO2e: 15 g of paper, data/factors/uk-2025.csv row 19_506_…


def records_file(path: Path, customers: list[Any]) -> Path:
    """Three months of statements by post to each customer, and three rows that are wrong."""
    now = utcnow()
    rows = [
        {"key": f"BILL-{c.id}-{n}", "process": "billing", "kind": "letter_posted",
         "occurred_at": (now - timedelta(days=10 + 30 * n)).isoformat(), "quantity": "4",
         "customer_email": c.email, "detail": "paper statement"}
        for c in customers
        for n in range(3)
    ]  # fmt: skip
    rows.insert(2, {**rows[0], "key": "BAD-1", "quantity": "lots"})  # line 4
    rows.insert(5, {**rows[0], "key": "BAD-2", "customer_email": "nobody@example.org"})  # line 7
    rows.insert(9, {**rows[0], "key": "BAD-3", "kind": "fax_sent"})  # line 11
    columns = ["key", "process", "kind", "occurred_at", "quantity", "customer_email", "detail"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def import_records(path: Path) -> str:
    result = CliRunner().invoke(app, ["import", "records", str(path)])
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│┃]", " ", result.output).split())


async def review() -> None:
    """Run the service review now, as an operator could from the Prefect UI, and wait for it."""
    async with get_client() as client:
        run = await arun_deployment(
            "service-review/service-review", timeout=DEADLINE, poll_interval=0.5, client=client
        )
    assert run.state is not None and run.state.is_completed(), f"review {run.state_name}"


def detected(session: Session) -> list[Improvement]:
    session.expire_all()
    return list(
        session.exec(
            select(Improvement)
            .where(Improvement.source == Source.detected)
            .order_by(col(Improvement.id))
        ).all()
    )


def rows_of(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["measure"]: row for row in detail}


async def test_service_records_become_a_detected_improvement_measured_against_its_forecast(
    session: Session,
    smtp: SmtpServer,
    web: httpx.Client,
    stack: Stack,
    started: datetime,
    tmp_path: Path,
) -> None:
    alex = make_approver(session, "Alex Approver", category=Category.resource, limit=5_000)
    customers = [make_customer(session, f"Paper Customer {n}") for n in range(5)]

    # Imported: 15 rows taken, the three bad ones named by line and field; again: nothing new.
    path = records_file(tmp_path / "billing.csv", customers)
    first = import_records(path)
    assert re.search(r"taken 15 .*already there 0 .*refused 3", first), first
    assert "line 4, quantity" in first and "line 7, customer_email" in first
    assert "line 11, kind" in first
    second = import_records(path)
    assert re.search(r"taken 0 .*already there 15 .*refused 3", second), second
    assert len(session.exec(select(ServiceRecord)).all()) == 15

    # The review finds the five customers on paper and proposes one improvement, with its
    # estimate worked out from the letters: 60 letters in 90 days is 243 a year.
    await review()
    [found] = detected(session)
    assert found.category == Category.resource and found.opportunity is not None
    assert found.title == "Move 5 customers of billing from paper to email"
    assert found.kg_co2e == pytest.approx(243 * LETTER)
    assert found.sheets_paper == 486 and found.annual_saving == pytest.approx(243 * 0.85)
    [evidence] = session.exec(select(Evidence).where(Evidence.improvement_id == found.id)).all()
    assert evidence.rule == "paper-statements" and evidence.record_count == 15
    with browser_of(stack, alex.id) as browser:
        listed = browser.get(f"/records?{evidence.records_query}")
        assert listed.status_code == 200 and "15 records" in listed.text, listed.text[:2000]

    # A second review while it is open raises nothing new.
    await review()
    assert [i.id for i in detected(session)] == [found.id]

    # Routed like any improvement: the approver decides from the email.
    assert found.id is not None
    [request] = await wait_for_mail(smtp, alex.email, f"IMP-{found.id}")
    [approve] = links(request, "approvals")
    assert web.post(approve, data={"decision": "approve"}).status_code == 200

    # Nobody submitted it, so the approver owns the plan's steps: each email's link marks one
    # done; the last is the measurement — 200 letters a year were still posted, not 243.
    done: set[str] = set()

    async def next_step() -> str | None:
        for message in mail_to(smtp, alex.email):
            for link in links(message, "actions"):
                if link not in done:
                    return link
        return None

    for _ in range(2):
        step = await eventually(next_step, "the next step's email", lambda: f"  done: {done}")
        page = web.get(step)
        assert page.status_code == 200, page.text
        form = {"note": "done"}
        if "Measure paper saved" in page.text:
            form |= {"activity_0": "letters", "quantity_0": "200", "per_0": "year"}
        assert web.post(step, data=form).status_code == 200
        done.add(step)
    await wait_for_runs(found.id, started, "announce")

    # Forecast and actual, side by side: on the page, the dashboard and the API.
    detail = web.get(f"/api/improvements/{found.id}").json()
    assert detail["status"] == "completed"
    rows = rows_of(detail["forecast_vs_actual"])
    assert rows["kg_co2e"]["forecast"] == pytest.approx(243 * LETTER)
    assert rows["kg_co2e"]["actual"] == pytest.approx(200 * LETTER)
    assert rows["kg_co2e"]["variance"] == pytest.approx(-43 * LETTER)
    assert [line["basis"] for line in detail["working"]] == ["forecast", "actual"]
    impact = rows_of(web.get("/api/impact").json()["by_category"]["resource"])
    assert impact["sheets_paper"]["actual"] == pytest.approx(400)
    with browser_of(stack, alex.id) as browser:
        page = browser.get(f"/improvements/{found.id}").text
        assert "243 fewer letters posted a year" in page
        assert "200 fewer letters posted a year" in page and "row 19_506_5164_15_1" in page
        assert "Forecast and actual, completed improvements" in browser.get("/").text

    # Reviewed again: what the approver decided on is not asked again.
    await review()
    assert [i.id for i in detected(session)] == [found.id]

    # The week's impact digest: the stakeholder's report carries the measured result and its
    # charts inside the email; the colleague's digest says who achieved what.
    session.add(Stakeholder(name="Brightwater Town Council", email="council@example.org"))
    session.commit()
    async with get_client() as client:
        run = await arun_deployment(
            "impact-digest/impact-digest",
            parameters={"week_ending": utcnow().date().isoformat()},
            timeout=DEADLINE,
            poll_interval=0.5,
            client=client,
        )
    assert run.state is not None and run.state.is_completed(), f"digest {run.state_name}"
    [report] = await wait_for_mail(smtp, "council@example.org", "impact")
    assert f"Emissions avoided: {quantity(200 * LETTER, 'kg CO2e')} a year" in report.text
    assert "Paper saved:       400 sheets a year" in report.text
    charts = [p for p in report.message.walk() if p.get_content_type() == "image/png"]
    assert len(charts) == 6
    assert all(p["Content-ID"] and p.get_payload(decode=True)[:8] == b"\x89PNG\r\n\x1a\n"
               for p in charts)  # fmt: skip
    assert 'alt="' in report.html and "cid:" in report.html
    [digest] = await wait_for_mail(smtp, alex.email, "Improve this week")
    assert f"{found.reference} {found.title}" in digest.text
