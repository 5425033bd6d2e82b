"""service-review: a finding becomes a detected improvement that routes like any other, the
artifact says what each rule read and found, and a second run raises nothing new."""

from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from sqlmodel import Session, select

from flows.route_improvement import route_improvement
from flows.service_review import service_review
from models import (
    ApprovalRequest,
    Category,
    Improvement,
    RecordKind,
    ServiceProcess,
    ServiceRecord,
    Source,
    Status,
)
from models.db import utcnow
from tests.factories import make_approver, make_customer
from tests.flows.helpers import to
from tests.smtpd import SmtpServer


async def test_a_review_raises_a_finding_once_reports_it_and_it_is_routed(
    session: Session, smtp: SmtpServer
) -> None:
    approver = make_approver(session, "Owen Fleet", category=Category.carbon)
    customer = make_customer(session, "Visited twice")
    field = ServiceProcess(name="field visits")
    session.add(field)
    session.commit()
    for n, days in enumerate((25, 5)):
        session.add(
            ServiceRecord(
                key=f"visit-{n}",
                process_id=field.id,
                kind=RecordKind.site_visit,
                occurred_at=utcnow() - timedelta(days=days),
                quantity=1,
                customer_id=customer.id,
            )  # fmt: skip
        )
    session.commit()

    state = await service_review(return_state=True)

    assert state.is_completed()
    assert (await state.result())["raised"] == 1
    raised = session.exec(select(Improvement)).one()
    assert (raised.source, raised.status) == (Source.detected, Status.submitted)
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["service-review"])),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
        )
    report = str(artifact.data)
    assert "| repeat-visits | repeat visits to one customer | 2 site_visit | 1 | " in report
    assert f"IMP-{raised.id} Settle Visited twice's repeat visits in one" in report
    assert "| paper-statements | customers on paper with an email and consent | 0 " in report

    again = await service_review()
    assert (again["raised"], again["answered"]) == (0, 1)
    assert session.exec(select(Improvement)).all() == [raised]

    # Nobody submitted it, and it is routed like any submission to whoever may approve it.
    await route_improvement(raised.id)
    request = session.exec(select(ApprovalRequest)).one()
    assert request.approver_id == approver.id
    assert len(to(smtp, approver.email)) == 1
