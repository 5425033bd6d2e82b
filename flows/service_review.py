"""service-review: the daily reading of service records that proposes detected improvements."""

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact

from flows.steps import emit_submitted, review_records
from models.db import utcnow


def _review_name() -> str:
    return f"service review · {utcnow():%Y-%m-%d %H:%M}"


@flow(name="service-review", flow_run_name=_review_name)
async def service_review() -> dict[str, int]:
    """Apply the rules to the service records, propose what they find, and say what was seen.

    Each finding is raised once while its improvement is open, so a second run raises nothing
    new. The proposals are committed before they are announced; one whose event is lost is
    routed by the sweep. The artifact says, per rule, what it read and what came of it.
    """
    report = await review_records()
    await emit_submitted(report.raised)
    logger = get_run_logger()
    logger.info("Reviewed: %s", report.counts())
    try:
        await acreate_markdown_artifact(
            key="service-review",
            markdown=report.markdown(),
            description="What the service review read and what it found",
        )
    except Exception:  # a report that cannot be stored must not undo the review
        logger.exception("The service review's report could not be stored as an artifact")
    return report.counts()
