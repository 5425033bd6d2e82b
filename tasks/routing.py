"""Routing by authority: who should approve an improvement, at which level, and why them."""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, select

from improve.errors import ImproveError
from improve.formatting import label, money
from improve.settings import settings
from models import ApprovalRequest, Authority, Category, Colleague, Improvement
from models.db import utcnow
from tasks.lifecycle import get_improvement


@dataclass(frozen=True)
class Route:
    """One approver for one level, on whose behalf they act (a deputy), and why they were chosen."""

    level: int
    approver_id: int
    on_behalf_of_id: int | None
    reason: str


class NoApprover(ImproveError):
    """Nobody can be asked: no authority covers the request and no fallback can take it."""

    status_code = 409


def levels_needed(estimated_cost: float, threshold: float) -> int:
    """One approval, or two when the estimated cost is above the two-level threshold."""
    return 2 if estimated_cost > threshold else 1


def levels_for(improvement: Improvement, requests: Sequence[ApprovalRequest] = ()) -> int:
    """Levels this improvement needs: by its cost now, and never fewer than already asked."""
    by_cost = levels_needed(improvement.estimated_cost, settings.two_level_threshold)
    return max([by_cost, *(r.level for r in requests)])


def _until(colleague: Colleague) -> str:
    return (
        f"until {colleague.absent_to:%Y-%m-%d}" if colleague.absent_to else "until further notice"
    )


def _authority_sentence(
    category: Category | str, limit: float, level: int, cost: float, holder: str | None = None
) -> str:
    whose = f"{holder}'s {label(category).lower()}" if holder else label(category)
    return (
        f"{whose} authority up to {money(limit)} at level {level} "
        f"covers the estimated {money(cost)}"
    )


class Organisation:
    """The colleagues and authorities one routing decision looks at, indexed once.

    `load_organisation` reads it for a stored improvement; tests build one from plain lists.
    """

    def __init__(
        self,
        *,
        category: Category | str,
        estimated_cost: float,
        submitter_id: int | None,
        colleagues: Iterable[Colleague],
        authorities: Iterable[Authority],
        fallback: Colleague | None,
        today: date,
    ) -> None:
        self.category = Category(category)
        self.cost = float(estimated_cost)
        self.submitter_id = submitter_id
        self.people = {c.id: c for c in colleagues if c.id is not None}
        if fallback is not None and fallback.id is not None:
            self.people.setdefault(fallback.id, fallback)
        self.authorities = [a for a in authorities if Category(a.category) == self.category]
        self.fallback = fallback
        self.today = today

    def available(self, colleague: Colleague | None, taken: Collection[int]) -> bool:
        """Can this person be asked today: active, present, not the submitter, not already asked."""
        return (
            colleague is not None
            and colleague.active
            and not colleague.is_absent_on(self.today)
            and colleague.id != self.submitter_id
            and colleague.id not in taken
        )

    def deputy_of(self, colleague: Colleague) -> Colleague | None:
        return self.people.get(colleague.deputy_id) if colleague.deputy_id else None

    def cover(self, level: int, taken: Collection[int]) -> tuple[Route | None, list[str]]:
        """The most local authority that covers this level, and notes on whoever was passed over.

        Smallest sufficient limit first (the closest manager rather than the director), then the
        lowest id, so the same organisation always gives the same answer.
        """
        covering = sorted(
            (a for a in self.authorities if a.level == level and a.spending_limit >= self.cost),
            key=lambda a: (a.spending_limit, a.colleague_id),
        )
        notes: list[str] = []
        seen: set[int] = set()
        for authority in covering:
            if authority.colleague_id in seen:
                continue
            seen.add(authority.colleague_id)
            holder = self.people.get(authority.colleague_id)
            covers = _authority_sentence(self.category, authority.spending_limit, level, self.cost)
            if holder is None or not holder.active:
                notes.append(
                    f"{holder.name if holder else 'a former colleague'} is no longer active"
                )
                continue
            if holder.id == self.submitter_id:
                notes.append(f"{holder.name} submitted it")
                continue
            if holder.id in taken:
                notes.append(f"{holder.name} was already asked")
                continue
            if not holder.is_absent_on(self.today):
                reason = "; ".join([*absences(notes), covers])
                return Route(level, holder.id, None, reason), notes  # type: ignore[arg-type]
            deputy = self.deputy_of(holder)
            if self.available(deputy, taken):
                assert deputy is not None
                reason = "; ".join(
                    [
                        *absences(notes),
                        f"{holder.name} is absent {_until(holder)}; {deputy.name} is their deputy "
                        "and acts on their behalf. "
                        + _authority_sentence(
                            self.category, authority.spending_limit, level, self.cost, holder.name
                        ),
                    ]
                )
                return Route(level, deputy.id, holder.id, reason), notes  # type: ignore[arg-type]
            if deputy is None:
                notes.append(f"{holder.name} is absent {_until(holder)} with no deputy")
            else:
                notes.append(
                    f"{holder.name} is absent {_until(holder)} and their deputy "
                    f"{deputy.name} is not available"
                )
        return None, notes

    def nobody_covers(self, level: int, notes: list[str]) -> str:
        """Why no authority covers this level, in words the fallback approver can check."""
        at_level = [a for a in self.authorities if a.level == level]
        words = label(self.category).lower()
        if not at_level:
            detail = f"nobody holds {words} authority at level {level}"
        elif all(a.spending_limit < self.cost for a in at_level):
            highest = max(a.spending_limit for a in at_level)
            detail = f"the highest {words} limit at level {level} is {money(highest)}"
        else:
            detail = "; ".join(notes)
        return (
            f"Nobody's authority covers {words} at {money(self.cost)} at level {level} ({detail})"
        )

    def to_fallback(self, level: int, why: str, taken: Collection[int]) -> Route | None:
        """The configured fallback (or their deputy when they cannot take it), or None."""
        fallback = self.fallback
        if fallback is None or fallback.id is None:
            return None
        usable = fallback.active and fallback.id != self.submitter_id and fallback.id not in taken
        if usable and not fallback.is_absent_on(self.today):
            return Route(level, fallback.id, None, f"{why}; sent to the operations fallback")
        deputy = self.deputy_of(fallback)
        if self.available(deputy, taken):
            assert deputy is not None
            return Route(
                level,
                deputy.id,  # type: ignore[arg-type]
                fallback.id,
                f"{why}; sent to the operations fallback, {fallback.name}, who is "
                f"{'absent ' + _until(fallback) if usable else 'not available'}, "
                f"so to {deputy.name}, their deputy",
            )
        if usable:  # absent with nobody to stand in: still theirs, and the sweep will escalate
            return Route(
                level,
                fallback.id,
                None,
                f"{why}; sent to the operations fallback (absent {_until(fallback)}, no deputy)",
            )
        return None

    def goodwill_within_own_authority(self, levels: int) -> bool:
        """C8: a goodwill gesture the submitter may make on their own authority, at every level."""
        submitter = self.people.get(self.submitter_id) if self.submitter_id else None
        if self.category != Category.goodwill or submitter is None or not submitter.active:
            return False
        return holds_authority(self.authorities, submitter.id, self.cost, levels)  # type: ignore[arg-type]


def holds_authority(
    authorities: Iterable[Authority], colleague_id: int, cost: float, levels: int
) -> bool:
    """Whether a colleague's own authorities cover `cost` at every level it needs: the one rule
    for approving on one's own authority (a goodwill gesture, an alternative for a customer)."""
    held = [a for a in authorities if a.colleague_id == colleague_id]
    return all(
        any(a.level == level and a.spending_limit >= cost for a in held)
        for level in range(1, levels + 1)
    )


def absences(notes: list[str]) -> list[str]:
    """The notes worth telling the chosen approver: someone ahead of them is away."""
    return [note for note in notes if " is absent " in note]


def choose_approvers(
    *,
    org: Organisation,
    threshold: float,
    levels: Collection[int] | None = None,
    exclude: Collection[int] = (),
) -> list[Route]:
    """One approver per level needed, each with the reason they were chosen.

    An empty list means a goodwill gesture within the submitter's own authority (approved without
    asking anyone); every other case asks someone, falling back to the operations fallback.
    `levels` limits the answer to some levels (the second level is asked after the first approves)
    and `exclude` names colleagues who may not be asked (those who already decided another level).
    Raises NoApprover when a level has neither a covering authority nor a usable fallback.
    """
    needed = levels_needed(org.cost, threshold)
    if org.goodwill_within_own_authority(needed):
        return []
    wanted = range(1, needed + 1) if levels is None else sorted(levels)
    taken: set[int] = set(exclude)
    routes: list[Route] = []
    for level in wanted:
        route, notes = org.cover(level, taken)
        if route is None:
            why = org.nobody_covers(level, notes)
            route = org.to_fallback(level, why, taken)
            if route is None:
                raise NoApprover(
                    f"Nobody can approve {label(org.category).lower()} at {money(org.cost)} "
                    f"at level {level}: {why[0].lower()}{why[1:]}, and there is no usable fallback "
                    "approver (IMPROVE_FALLBACK_APPROVER must be the email of an active colleague "
                    "who did not submit it)"
                )
        routes.append(route)
        # A second level means a second pair of eyes: neither the approver nor the one they
        # stand in for may be asked again.
        taken.add(route.approver_id)
        if route.on_behalf_of_id is not None:
            taken.add(route.on_behalf_of_id)
    return routes


def choose_replacement(
    *,
    org: Organisation,
    level: int,
    approver_id: int,
    on_behalf_of_id: int | None,
    asked: Collection[int],
    why: str,
) -> Route | None:
    """Who takes over a request its approver has not answered: their deputy, the next covering
    authority, else the fallback. None when everyone has been asked already.

    `asked` holds everyone already asked at this level and whoever decided another level; `why`
    says what happened ("has not answered in 5 days").
    """
    approver = org.people.get(approver_id)
    name = approver.name if approver else "The approver"
    taken = {*asked, approver_id}
    deputy = org.deputy_of(approver) if approver else None
    if org.available(deputy, taken):
        assert deputy is not None
        return Route(
            level,
            deputy.id,  # type: ignore[arg-type]
            on_behalf_of_id or approver_id,
            f"{name} {why}; {deputy.name} is their deputy and acts on their behalf",
        )
    route, notes = org.cover(level, taken)
    if route is not None:
        return Route(
            route.level, route.approver_id, route.on_behalf_of_id, f"{name} {why}; {route.reason}"
        )
    fallback_route = org.to_fallback(
        level, f"{name} {why}; {org.nobody_covers(level, notes)}", taken
    )
    return fallback_route


def load_fallback(session: Session) -> Colleague | None:
    """The colleague named by settings.fallback_approver, if there is one."""
    email = settings.fallback_approver.strip().lower()
    return (
        session.exec(select(Colleague).where(Colleague.email == email)).first() if email else None
    )


def load_organisation(*, session: Session, improvement: Improvement, today: date) -> Organisation:
    """Today's colleagues, the authorities for the improvement's category, and the fallback."""
    return Organisation(
        category=improvement.category,
        estimated_cost=improvement.estimated_cost,
        submitter_id=improvement.submitter_id,
        colleagues=session.exec(select(Colleague)).all(),
        authorities=session.exec(
            select(Authority).where(Authority.category == improvement.category)
        ).all(),
        fallback=load_fallback(session),
        today=today,
    )


def routes_for(
    *,
    session: Session,
    improvement_id: int,
    today: date | None = None,
    levels: Collection[int] | None = None,
    exclude: Collection[int] = (),
) -> list[Route]:
    """choose_approvers for a stored improvement, with today's colleagues and authorities."""
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    return choose_approvers(
        org=load_organisation(
            session=session, improvement=improvement, today=today or utcnow().date()
        ),
        threshold=settings.two_level_threshold,
        levels=levels,
        exclude=exclude,
    )
