"""Event names, and the one helper that announces them to Prefect after a commit."""

import logging
from collections.abc import Iterable

from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL

SUBMITTED = "improve.improvement.submitted"
APPROVAL_DECIDED = "improve.approval.decided"
ACTION_COMPLETED = "improve.action.completed"
COMPLETED = "improve.improvement.completed"
CASE_UPDATE_OVERDUE = "improve.case.update-overdue"
# A customer accepted an alternative: its improvement is planned (advance-improvement).
ALTERNATIVE_ACCEPTED = "improve.alternative.accepted"

log = logging.getLogger(__name__)


def improvement_resource(improvement_id: int) -> dict[str, str]:
    return {
        "prefect.resource.id": f"improve.improvement.{improvement_id}",
        "improve.improvement-id": str(improvement_id),
    }


def emit(
    event: str,
    *,
    improvement_id: int,
    related: Iterable[tuple[str, str]] = (),
    payload: dict[str, object] | None = None,
) -> None:
    """Announce that something was committed. Call only after the commit.

    Losing an event loses nothing: the sweep finds what the database says is due and moves it on.
    `related` are (role, resource id) pairs such as ("approver", "improve.colleague.7").
    """
    if not PREFECT_API_URL.value():
        # Without a Prefect server Prefect would start a temporary one per process (~20 s);
        # the flows are not listening then anyway, and the sweep moves things on later.
        log.info("no Prefect API configured; %s for IMP-%s not announced", event, improvement_id)
        return
    try:
        emit_event(
            event=event,
            resource=improvement_resource(improvement_id),
            related=[
                {"prefect.resource.id": resource_id, "prefect.resource.role": role}
                for role, resource_id in related
            ],
            payload=payload or {},
        )
    except Exception:  # the commit stands; the sweep is the safety net
        log.exception(
            "could not emit %s for IMP-%s; the sweep will pick it up", event, improvement_id
        )


def emit_submitted(*, improvement_id: int, submitter_id: int | None, channel: str) -> None:
    """Announce a committed submission, from whichever door it came: starts route-improvement."""
    emit(
        SUBMITTED,
        improvement_id=improvement_id,
        related=[("submitter", f"improve.colleague.{submitter_id}")] if submitter_id else [],
        payload={"channel": str(channel)},
    )


def emit_actions_completed(
    *, improvement_id: int | None, action_ids: Iterable[int], owner_id: int | None
) -> None:
    """Announce committed completions of action items: advance-improvement finishes the plan."""
    if improvement_id is None:
        return
    for action_id in action_ids:
        emit(
            ACTION_COMPLETED,
            improvement_id=improvement_id,
            related=[("owner", f"improve.colleague.{owner_id}")] if owner_id else [],
            payload={"action_id": action_id},
        )
