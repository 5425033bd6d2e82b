"""Automatic steps: the parts of an action plan a task carries out rather than a person.

A playbook step in tasks/planning.py names one of AUTOMATIC_STEPS; when its turn comes the
advance-improvement flow (or the sweep) runs it and marks it done.
"""

from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, NotFound
from models import ActionItem, ActionStatus, Improvement, Purpose, Status
from models.db import utcnow
from tasks.choices import customer_update_summary
from tasks.consent import consenting_customer_ids
from tasks.impact import (
    affected_customers,
    impact_lines,
    queue_customer_notices,
    queue_partner_notices,
)
from tasks.lifecycle import get_improvement
from tasks.mail import translations
from tasks.planning import action_items

AUTOMATIC = "automatic step"  # completed_by of a step a task carried out


def open_automatic_steps(*, session: Session, improvement_id: int) -> list[int]:
    """Automatic items whose turn has come, in plan order: open, with every item before them
    done or cancelled or itself one of these automatic steps.

    Run them in the order given (switch customers, then tell them); a person's open step stops the
    list, and its completion (ACTION_COMPLETED) is what makes the next ones ready.
    """
    ready: list[int] = []
    for item in action_items(session, improvement_id):
        if item.status != ActionStatus.open:
            continue
        if item.automatic_step is None:
            break  # a person's step comes first; later steps wait for it
        assert item.id is not None
        ready.append(item.id)
    return ready


def automatic_steps_due(*, session: Session) -> list[int]:
    """Every automatic item whose turn has come, across improvements in progress (for the sweep)."""
    in_progress = session.exec(
        select(Improvement.id)
        .where(Improvement.status == Status.in_progress)
        .order_by(col(Improvement.id))
    ).all()
    due: list[int] = []
    for improvement_id in in_progress:
        if improvement_id is not None:
            due.extend(open_automatic_steps(session=session, improvement_id=improvement_id))
    return due


def _switch_to_estatements(session: Session, item: ActionItem, improvement: Improvement) -> str:
    # There is no statement-delivery column yet (contact_format is about email, consent about
    # purposes), so the switch is recorded on the step itself. Only customers who agreed to hear
    # about improvements are switched: nobody is changed without being told.
    assert improvement.id is not None
    customers = affected_customers(session=session, improvement_id=improvement.id)
    told = consenting_customer_ids(
        session=session,
        customer_ids=[c.id for c in customers if c.id is not None],
        purpose=Purpose.improvement_updates,
    )
    switched = [f"{c.name} (#{c.id})" for c in customers if c.id in told]
    kept = [f"{c.name} (#{c.id})" for c in customers if c.id not in told]
    note = f"Switched to e-statements: {', '.join(switched) or 'nobody'}."
    if kept:
        note += f" Left on paper (not agreed to be told of changes): {', '.join(kept)}."
    return note


def _expectation(improvement: Improvement, language: str = "en") -> str:
    """The estimate as one sentence: mid-plan nothing is achieved yet, so it is not listed."""
    lines = impact_lines(improvement, language)
    if not lines:
        return ""
    we_expect = {"en": "We expect ", "cy": "Rydym yn disgwyl "}[language]
    return we_expect + "; ".join(line[0].lower() + line[1:] for line in lines) + "."


def _switched_to_estatements(session: Session, improvement_id: int) -> bool:
    return (
        session.exec(
            select(ActionItem.id).where(
                ActionItem.improvement_id == improvement_id,
                ActionItem.automatic_step == "switch_to_estatements",
                ActionItem.status == ActionStatus.done,
            )
        ).first()
        is not None
    )


def _notify_customers(session: Session, item: ActionItem, improvement: Improvement) -> str:
    assert improvement.id is not None
    # Each customer reads it in their own language; the description stays in the words it was
    # written in (a colleague's, not ours to translate).
    en = [f"We have made a change to how we serve you: “{improvement.title}”."]
    cy = [f"Rydym wedi gwneud newid i'r ffordd rydym yn eich gwasanaethu: “{improvement.title}”."]
    if _switched_to_estatements(session, improvement.id):
        # Only customers who hear this were switched (see _switch_to_estatements).
        en.append(
            "From now on your statements come by email rather than by post. If you would rather "
            "keep paper statements, reply to this email and we will switch you back."
        )
        cy.append(
            "O hyn ymlaen bydd eich datganiadau'n dod drwy e-bost yn hytrach na drwy'r post. Os "
            "byddai'n well gennych gadw datganiadau papur, atebwch yr e-bost hwn a byddwn yn eich "
            "newid yn ôl."
        )
    else:
        en.append(_short(improvement))
        cy.append(_short(improvement))
    en.append(_expectation(improvement))
    cy.append(_expectation(improvement, "cy"))
    summary = translations(en=" ".join(p for p in en if p), cy=" ".join(p for p in cy if p))
    return _tell(session, item, improvement, summary)


def _send_customer_update(session: Session, item: ActionItem, improvement: Improvement) -> str:
    # An accepted alternative is told in the customer's terms: its description is for approvers.
    chosen = customer_update_summary(session, improvement)
    if chosen is not None:
        return _tell(session, item, improvement, chosen, only_case_customer=True)
    summary = translations(
        en=f"An update from us: “{improvement.title}”. {_short(improvement)}".strip(),
        cy=f"Diweddariad gennym: “{improvement.title}”. {_short(improvement)}".strip(),
    )
    return _tell(session, item, improvement, summary)


def _tell(
    session: Session,
    item: ActionItem,
    improvement: Improvement,
    summary: str | dict[str, str],
    *,
    only_case_customer: bool = False,
) -> str:
    counts = queue_customer_notices(
        session=session,
        improvement=improvement,
        key_prefix=f"step:{item.id}",
        summary=summary,
        lines=[],  # the template lists these as achieved; mid-plan the estimate is in the summary
        only_case_customer=only_case_customer,
    )
    return (
        f"Notice queued for {counts['customers']} customer(s); "
        f"{counts['not_consented']} not written to (no consent to improvement updates)."
    )


def _notify_partners(session: Session, item: ActionItem, improvement: Improvement) -> str:
    summary = " ".join(
        p
        for p in (
            f"The change “{improvement.title}”, which involves your service to us, is now in "
            "place.",
            _short(improvement),
            _expectation(improvement),
            "We will measure the result and tell you what it achieved.",
        )
        if p
    )
    counts = queue_partner_notices(
        session=session,
        improvement=improvement,
        key_prefix=f"step:{item.id}",
        summary=summary,
        lines=[],
    )
    return f"Notice queued for {counts['partners']} partner(s)."


def _short(improvement: Improvement, limit: int = 600) -> str:
    text = " ".join(improvement.description.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


AUTOMATIC_STEPS: dict[str, Callable[[Session, ActionItem, Improvement], str]] = {
    "switch_to_estatements": _switch_to_estatements,
    "notify_customers": _notify_customers,
    "send_customer_update": _send_customer_update,
    "notify_partners": _notify_partners,
}


def run_automatic_step(*, session: Session, action_id: int) -> ActionItem:
    """Carry out an automatic item and mark it done; a done item comes back as it is.

    The caller commits.

    Every email the step queues has a key of its own, so a retry after a crash sends nothing twice.
    """
    item = session.get(ActionItem, action_id, populate_existing=True)
    if item is None:
        raise NotFound("action", action_id)
    if item.status != ActionStatus.open:
        return item
    if item.automatic_step not in AUTOMATIC_STEPS:
        raise InvalidInput(
            {"automatic_step": f"action {action_id} names no known step: {item.automatic_step!r}"}
        )
    improvement = get_improvement(session=session, improvement_id=item.improvement_id)
    note = AUTOMATIC_STEPS[item.automatic_step](session, item, improvement)
    session.execute(
        update(ActionItem)
        .where(col(ActionItem.id) == action_id, col(ActionItem.status) == ActionStatus.open)
        .values(
            status=ActionStatus.done,
            completed_by=AUTOMATIC,
            completed_at=utcnow(),
            result_note=note[:2000],
        )
    )
    session.refresh(item)
    return item
