"""Routing by authority, table by table: who is asked at each level, and the reason they read."""

from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from sqlmodel import Session

from improve.settings import settings
from models import Authority, Category, Colleague
from tasks.routing import NoApprover, Organisation, Route, choose_approvers, routes_for
from tests.factories import make_authority, make_colleague, make_improvement

TODAY = date(2026, 11, 30)
BACK = TODAY + timedelta(days=4)  # when the absent colleagues return


@dataclass
class Person:
    # (category, spending limit, level) for each authority this person holds
    authorities: list[tuple[str, float, int]] = field(default_factory=list)
    deputy: str | None = None
    absent: bool = False
    active: bool = True


@dataclass
class Case:
    people: dict[str, Person]
    submitter: str
    category: str
    cost: float
    expected: list[tuple[int, str, str | None, str]]  # level, approver, on behalf of, reason part
    fallback: str | None = "Olu Ade"


CASES = {
    "simple-cover": Case(
        people={"Sam Lee": Person([("energy", 5_000, 1)])},
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[
            (
                1,
                "Sam Lee",
                None,
                "Energy authority up to £5,000 at level 1 covers the estimated £1,200",
            )
        ],
    ),
    "smallest-sufficient-limit-wins": Case(
        people={
            "Dana Okafor": Person([("energy", 50_000, 1)]),
            "Sam Lee": Person([("energy", 5_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[(1, "Sam Lee", None, "up to £5,000")],
    ),
    "equal-limits-lowest-id-wins": Case(
        people={
            "Sam Lee": Person([("waste", 5_000, 1)]),
            "Dana Okafor": Person([("waste", 5_000, 1)]),
        },
        submitter="Asha Patel",
        category="waste",
        cost=300,
        expected=[(1, "Sam Lee", None, "Waste authority up to £5,000")],
    ),
    "over-a-limit-goes-to-a-bigger-authority": Case(
        people={
            "Sam Lee": Person([("energy", 5_000, 1)]),
            "Dana Okafor": Person([("energy", 9_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=8_000.5,
        expected=[(1, "Dana Okafor", None, "up to £9,000 at level 1 covers the estimated £8,000")],
    ),
    "other-categories-do-not-count": Case(
        people={
            "Sam Lee": Person([("waste", 50_000, 1)]),
            "Dana Okafor": Person([("energy", 9_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=800,
        expected=[(1, "Dana Okafor", None, "Energy authority")],
    ),
    "two-levels-above-the-threshold": Case(
        people={
            "Sam Lee": Person([("carbon", 20_000, 1)]),
            "Dana Okafor": Person([("carbon", 100_000, 2)]),
        },
        submitter="Asha Patel",
        category="carbon",
        cost=12_000,
        expected=[
            (1, "Sam Lee", None, "Carbon authority up to £20,000 at level 1"),
            (2, "Dana Okafor", None, "Carbon authority up to £100,000 at level 2"),
        ],
    ),
    "two-levels-need-two-people": Case(
        people={
            "Dana Okafor": Person([("carbon", 20_000, 1), ("carbon", 50_000, 2)]),
            "Sam Lee": Person([("carbon", 90_000, 2)]),
        },
        submitter="Asha Patel",
        category="carbon",
        cost=15_000,
        expected=[
            (1, "Dana Okafor", None, "at level 1"),
            (2, "Sam Lee", None, "Carbon authority up to £90,000 at level 2"),
        ],
    ),
    "at-the-threshold-one-level-is-enough": Case(
        people={"Sam Lee": Person([("energy", 10_000, 1)])},
        submitter="Asha Patel",
        category="energy",
        cost=10_000,
        expected=[(1, "Sam Lee", None, "covers the estimated £10,000")],
    ),
    "the-submitter-never-approves-their-own": Case(
        people={
            "Asha Patel": Person([("energy", 5_000, 1)]),
            "Dana Okafor": Person([("energy", 50_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[(1, "Dana Okafor", None, "up to £50,000")],
    ),
    "absent-approver-deputy-acts-on-their-behalf": Case(
        people={
            "Sam Lee": Person([("energy", 5_000, 1)], deputy="Priya Shah", absent=True),
            "Priya Shah": Person(),
            "Dana Okafor": Person([("energy", 50_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[
            (
                1,
                "Priya Shah",
                "Sam Lee",
                f"Sam Lee is absent until {BACK}; Priya Shah is their deputy",
            )
        ],
    ),
    "absent-approver-with-absent-deputy-goes-to-the-next": Case(
        people={
            "Sam Lee": Person([("energy", 5_000, 1)], deputy="Priya Shah", absent=True),
            "Priya Shah": Person(absent=True),
            "Dana Okafor": Person([("energy", 50_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[
            (
                1,
                "Dana Okafor",
                None,
                f"Sam Lee is absent until {BACK} and their deputy Priya Shah is not available; "
                "Energy authority up to £50,000",
            )
        ],
    ),
    "absent-approver-whose-deputy-submitted-goes-to-the-next": Case(
        people={
            "Sam Lee": Person([("energy", 5_000, 1)], deputy="Asha Patel", absent=True),
            "Dana Okafor": Person([("energy", 50_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[(1, "Dana Okafor", None, "up to £50,000")],
    ),
    "inactive-colleague-skipped": Case(
        people={
            "Sam Lee": Person([("energy", 5_000, 1)], active=False),
            "Dana Okafor": Person([("energy", 50_000, 1)]),
        },
        submitter="Asha Patel",
        category="energy",
        cost=1_200,
        expected=[(1, "Dana Okafor", None, "up to £50,000")],
    ),
    "nobody-covers-so-the-fallback-with-the-reason": Case(
        people={
            "Sam Lee": Person([("waste", 100_000, 1)]),
            "Dana Okafor": Person([("waste", 50_000, 2)]),
        },
        submitter="Asha Patel",
        category="waste",
        cost=60_000,
        expected=[
            (1, "Sam Lee", None, "Waste authority up to £100,000 at level 1"),
            (
                2,
                "Olu Ade",
                None,
                "Nobody's authority covers waste at £60,000 at level 2 (the highest waste limit "
                "at level 2 is £50,000); sent to the operations fallback",
            ),
        ],
    ),
    "nobody-holds-the-category-so-the-fallback": Case(
        people={"Sam Lee": Person([("energy", 100_000, 1)])},
        submitter="Asha Patel",
        category="customer_update",
        cost=0,
        expected=[
            (
                1,
                "Olu Ade",
                None,
                "Nobody's authority covers customer update at £0 at level 1 (nobody holds "
                "customer update authority at level 1); sent to the operations fallback",
            )
        ],
    ),
    "only-the-submitter-covers-so-the-fallback": Case(
        people={"Asha Patel": Person([("process", 5_000, 1)])},
        submitter="Asha Patel",
        category="process",
        cost=400,
        expected=[
            (1, "Olu Ade", None, "(Asha Patel submitted it); sent to the operations fallback")
        ],
    ),
    "goodwill-within-the-submitters-own-limit-is-automatic": Case(
        people={
            "Asha Patel": Person([("goodwill", 500, 1)]),
            "Sam Lee": Person([("goodwill", 5_000, 1)]),
        },
        submitter="Asha Patel",
        category="goodwill",
        cost=200,
        expected=[],
    ),
    "goodwill-above-the-submitters-limit-is-routed": Case(
        people={
            "Asha Patel": Person([("goodwill", 500, 1)]),
            "Sam Lee": Person([("goodwill", 5_000, 1)]),
        },
        submitter="Asha Patel",
        category="goodwill",
        cost=800,
        expected=[(1, "Sam Lee", None, "Goodwill authority up to £5,000")],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_routing_table(session: Session, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    monkeypatch.setattr(settings, "two_level_threshold", 10_000.0)
    names = {case.submitter, *case.people, *([case.fallback] if case.fallback else [])}
    people: dict[str, Colleague] = {}
    for name in [*case.people, *sorted(names - set(case.people))]:  # table order sets the ids
        spec = case.people.get(name, Person())
        away = {"absent_from": TODAY - timedelta(days=2), "absent_to": BACK} if spec.absent else {}
        people[name] = make_colleague(session, name, active=spec.active, **away)
    for name, spec in case.people.items():
        for category, limit, level in spec.authorities:
            make_authority(session, people[name], category, limit, level)
        if spec.deputy:
            people[name].deputy_id = people[spec.deputy].id
            session.add(people[name])
    session.commit()
    if case.fallback:
        monkeypatch.setattr(settings, "fallback_approver", people[case.fallback].email)
    improvement = make_improvement(
        session, people[case.submitter], category=case.category, estimated_cost=case.cost
    )

    routes = routes_for(session=session, improvement_id=improvement.id, today=TODAY)

    by_id = {c.id: name for name, c in people.items()}
    got = [
        (r.level, by_id[r.approver_id], by_id.get(r.on_behalf_of_id) if r.on_behalf_of_id else None)
        for r in routes
    ]
    assert got == [(level, who, behalf) for level, who, behalf, _ in case.expected]
    for route, (*_, reason_part) in zip(routes, case.expected, strict=True):
        assert reason_part in route.reason


def _person(id_: int, name: str, **fields: object) -> Colleague:
    return Colleague(id=id_, name=name, email=f"{id_}@example.org", team="T", role="R", **fields)


def test_no_fallback_names_category_amount_and_level() -> None:
    asha = _person(1, "Asha Patel")
    with pytest.raises(NoApprover) as refused:
        choose_approvers(
            org=Organisation(
                category=Category.waste,
                estimated_cost=60_000,
                submitter_id=asha.id,
                colleagues=[asha],
                authorities=[],
                fallback=None,
                today=TODAY,
            ),
            threshold=10_000,
        )
    message = str(refused.value)
    assert "waste at £60,000 at level 1" in message
    assert "IMPROVE_FALLBACK_APPROVER" in message


def test_a_fallback_who_submitted_it_hands_over_to_their_deputy() -> None:
    priya = _person(2, "Priya Shah")
    olu = _person(1, "Olu Ade", deputy_id=2)
    routes = choose_approvers(
        org=Organisation(
            category=Category.energy,
            estimated_cost=100,
            submitter_id=olu.id,
            colleagues=[olu, priya],
            authorities=[],
            fallback=olu,
            today=TODAY,
        ),
        threshold=10_000,
    )
    assert routes == [Route(1, 2, 1, routes[0].reason)]
    assert "sent to the operations fallback, Olu Ade" in routes[0].reason


def test_the_same_organisation_always_gives_the_same_answer() -> None:
    people = [_person(i, f"Approver {i}") for i in (5, 3, 4)]
    authorities = [
        Authority(colleague_id=i, category=Category.resource, spending_limit=5_000, level=1)
        for i in (5, 4, 3)
    ]
    answers = {
        tuple(
            choose_approvers(
                org=Organisation(
                    category=Category.resource,
                    estimated_cost=100,
                    submitter_id=None,
                    colleagues=people[::step],
                    authorities=authorities[::step],
                    fallback=None,
                    today=TODAY,
                ),
                threshold=10_000,
            )
        )
        for step in (1, -1)
    }
    assert len(answers) == 1
    assert next(iter(answers))[0].approver_id == 3
