"""impact-digest: the week's digest to colleagues and report to stakeholders, sent once, with
the report's table and charts left as artifacts of the run."""

from datetime import UTC, date, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId
from sqlmodel import Session

from flows.impact_digest import impact_digest
from improve.settings import settings
from models import Category, Stakeholder
from tests.factories import make_colleague
from tests.flows.helpers import to
from tests.smtpd import SmtpServer
from tests.tasks.awareness_helpers import completed


async def test_the_digest_and_the_report_go_out_once_and_leave_their_figures_as_artifacts(
    session: Session, smtp: SmtpServer
) -> None:
    asha = make_colleague(session, "Asha Patel")
    ben = make_colleague(session, "Ben Okafor")
    council = Stakeholder(name="Town council", email="clerk@council.example")
    session.add(council)
    session.commit()
    completed(
        session, asha, "Smart meters", Category.energy, datetime(2026, 6, 10, tzinfo=UTC),
        kg_co2e=1000, annual_saving=500, measured_kg_co2e=1234, measured_saving=456,
    )  # fmt: skip

    state = await impact_digest(week_ending=date(2026, 6, 14), return_state=True)

    assert state.is_completed()
    assert await state.result() == {"digests_queued": 2, "reports_queued": 1, "sent": 3}
    [digest] = to(smtp, ben.email)
    assert digest.subject == "Improve this week (2026-W24): 1 improvement completed"
    assert "Smart meters (Energy)\r\n  by Asha Patel" in digest.text  # as sent: CRLF
    [report] = to(smtp, council.email)
    assert "1,234 kg CO2e" in report.subject
    assert sum(p.get_content_type() == "image/png" for p in report.message.walk()) == 6

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
        )
    by_key = {a.key: a for a in artifacts}
    table = str(by_key["impact-by-category"].data)
    assert "Energy" in table and "1234" in table and "1000" in table
    markdown = str(by_key["impact-report"].data)
    assert f"({settings.base_url}/impact/charts/kg-co2e-by-month.png)" in markdown
    assert "Jun 2026: 1,234 kg CO2e" in markdown

    again = await impact_digest(week_ending=date(2026, 6, 12))  # the same week
    assert again == {"digests_queued": 0, "reports_queued": 0, "sent": 0}
    assert len(smtp.received) == 3
