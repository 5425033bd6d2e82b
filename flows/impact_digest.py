"""impact-digest: each Monday, the colleague digest and the stakeholder report for the week just
ended, sent, and the report's table and charts left as artifacts."""

from datetime import date, timedelta

from prefect import flow
from prefect.runtime import flow_run

from flows.steps import (
    publish_report,
    queue_colleague_digests,
    queue_stakeholder_reports,
    send_outbox,
)
from improve.settings import settings
from models.db import utcnow
from tasks.report import week_of


def last_week_ending() -> date:
    """The Sunday of the last whole ISO week, in the organisation's time zone."""
    today = utcnow().astimezone(settings.zone).date()
    return today - timedelta(days=today.isoweekday())


def _digest_name() -> str:
    given = flow_run.parameters.get("week_ending")
    day = date.fromisoformat(str(given)) if given else last_week_ending()
    return f"impact digest · {week_of(day)[0]}"


@flow(name="impact-digest", flow_run_name=_digest_name)
async def impact_digest(week_ending: date | None = None) -> dict[str, int]:
    """Tell colleagues what was achieved and what waits, tell stakeholders the impact, publish it.

    `week_ending` is any day of the week to report (the last whole week if not given). Each email
    is queued once per person and week, so a second run for the same week sends nothing new.
    """
    day = week_ending or last_week_ending()
    period = week_of(day)[0]
    digests = await queue_colleague_digests(day)
    reports = await queue_stakeholder_reports(period)
    sent = await send_outbox()
    await publish_report(period)
    return {
        "digests_queued": digests["queued"],
        "reports_queued": reports["queued"],
        "sent": sent["sent"],
    }
