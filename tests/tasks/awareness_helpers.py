"""Improvements completed at a known moment with known figures, for the digest and the report."""

from datetime import datetime
from typing import Any

from sqlmodel import Session

from models import Category, Channel, Colleague, Improvement, Status, Transition
from tests.factories import make_improvement


def completed(
    session: Session,
    submitter: Colleague | None,
    title: str,
    category: Category,
    at: datetime,
    **figures: Any,
) -> Improvement:
    """A completed improvement whose history says it was completed `at`; `figures` are its
    columns (kg_co2e=..., measured_kg_co2e=..., annual_saving=..., measured_saving=...)."""
    improvement = make_improvement(
        session, submitter, title=title, category=category, status=Status.completed, **figures
    )
    assert improvement.id is not None
    session.add(
        Transition(
            improvement_id=improvement.id,
            from_status=Status.in_progress,
            to_status=Status.completed,
            actor="advance-improvement",
            channel=Channel.flow,
            at=at,
        )
    )
    session.commit()
    return improvement
