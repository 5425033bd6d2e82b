"""A believable organisation to try Improve on: Brightwater Utilities' customer service."""

import random
from datetime import timedelta

from sqlmodel import Session, select

from improve.demo_participation import seed_initiatives
from improve.demo_policies import seed_policies
from improve.demo_records import seed_records
from improve.settings import settings
from models import (
    Access,
    Authority,
    Category,
    Channel,
    Colleague,
    ContactFormat,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementCreate,
    Partner,
    Purpose,
    Stakeholder,
)
from models.db import utcnow
from tasks.alternatives import AlternativeIn, mark_cannot_meet
from tasks.approvals import route_improvement
from tasks.automatic import open_automatic_steps, run_automatic_step
from tasks.cases import change_case, mark_delayed, open_case
from tasks.decisions import advance_after_decision, record_decision
from tasks.impact import announce_completion
from tasks.lifecycle import get_improvement
from tasks.planning import complete_action, complete_improvement, plan_actions
from tasks.submission import submit_improvement
from tasks.updates import send_update

DOMAIN = "brightwater.example"

# name, team, role, authorities as (category, limit, level); deputies are wired below.
COLLEAGUES: list[tuple[str, str, str, list[tuple[str, float, int]]]] = [
    ("Dana Okafor", "Operations", "Head of Operations", [(c.value, 100_000, 2) for c in Category]),
    (
        "Priya Shah",
        "Sustainability",
        "Sustainability Manager",
        [
            ("energy", 25_000, 1),
            ("carbon", 25_000, 1),
            ("waste", 15_000, 1),
            ("resource", 15_000, 1),
            ("energy", 80_000, 2),
            ("carbon", 80_000, 2),
        ],
    ),
    (
        "Tom Barker",
        "Facilities",
        "Facilities Lead",
        [("energy", 8_000, 1), ("waste", 5_000, 1), ("resource", 5_000, 1)],
    ),
    (
        "Sam Lee",
        "Customer Service",
        "Team Leader",
        [
            ("customer_update", 2_000, 1),
            ("goodwill", 500, 1),
            ("alternative_solution", 3_000, 1),
            ("process", 2_000, 1),
        ],
    ),
    (
        "Grace Mensah",
        "Customer Service",
        "Team Leader",
        [
            ("customer_update", 2_000, 1),
            ("goodwill", 500, 1),
            ("alternative_solution", 3_000, 1),
            ("process", 2_000, 1),
        ],
    ),
    (
        "Hamid Rahman",
        "Customer Service",
        "Service Manager",
        [
            ("customer_update", 20_000, 2),
            ("goodwill", 5_000, 2),
            ("alternative_solution", 30_000, 2),
            ("process", 30_000, 2),
            ("goodwill", 2_500, 1),
            ("alternative_solution", 12_000, 1),
            ("process", 12_000, 1),
        ],
    ),
    (
        "Ellen Fraser",
        "Billing",
        "Billing Manager",
        [("resource", 10_000, 1), ("process", 10_000, 1), ("resource", 40_000, 2)],
    ),
    (
        "Owen Price",
        "Field Operations",
        "Fleet Manager",
        [("carbon", 12_000, 1), ("energy", 6_000, 1), ("resource", 6_000, 1)],
    ),
    (
        "Mei Chen",
        "Complaints",
        "Complaints Lead",
        [("alternative_solution", 4_000, 1), ("goodwill", 1_000, 1), ("customer_update", 1_500, 1)],
    ),
    ("Lucy Evans", "Customer Service", "Adviser", [("goodwill", 100, 1)]),
    ("Marcus Reid", "Customer Service", "Adviser", [("goodwill", 100, 1)]),
    ("Aisha Khan", "Billing", "Billing Adviser", []),
    ("Jon Walsh", "Field Operations", "Engineer", []),
    ("Nora Byrne", "Facilities", "Facilities Coordinator", []),
    ("Ravi Patel", "Sustainability", "Sustainability Analyst", []),
]
DEPUTIES = {
    "Sam Lee": "Grace Mensah",
    "Grace Mensah": "Sam Lee",
    "Tom Barker": "Nora Byrne",
    "Priya Shah": "Owen Price",
    "Hamid Rahman": "Dana Okafor",
    "Ellen Fraser": "Hamid Rahman",
    "Owen Price": "Tom Barker",
    "Mei Chen": "Hamid Rahman",
    "Dana Okafor": "Hamid Rahman",
}
# Who hears when someone's work sits (an overdue customer update goes to the owner's manager).
MANAGERS = {
    "Lucy Evans": "Sam Lee",
    "Marcus Reid": "Grace Mensah",
    "Sam Lee": "Hamid Rahman",
    "Grace Mensah": "Hamid Rahman",
    "Mei Chen": "Hamid Rahman",
    "Hamid Rahman": "Dana Okafor",
    "Aisha Khan": "Ellen Fraser",
    "Jon Walsh": "Owen Price",
    "Nora Byrne": "Tom Barker",
    "Ravi Patel": "Priya Shah",
}
ABSENT = "Tom Barker"  # on leave this week, so the demo shows a deputy acting
# Everyone else is a plain colleague: they submit in their own name and see no customer contacts.
ACCESS = {"Dana Okafor": Access.admin, "Hamid Rahman": Access.operations}
# Who `improve up --demo` offers to sign in as: operations, so every page shows everything.
DEMO_SIGN_IN = "Hamid Rahman"

PARTNERS = [
    ("Swift Parcels", "Courier", "Collections and deliveries; diesel vans"),
    ("Inkwell Print", "Print and post", "Bills and letters; 1.2m sheets a year"),
    ("GreenCycle Waste", "Waste contractor", "General and recycled waste from four sites"),
    ("Northgrid Energy", "Energy supplier", "Electricity and gas for offices and depots"),
    ("Facet FM", "Facilities management", "Cleaning, heating and lighting maintenance"),
    ("ReBoot IT", "IT recycling", "Refurbishes and recycles laptops and phones"),
    ("Leasewell Fleet", "Vehicle leasing", "42 vans, moving to electric"),
    ("Brightclean", "Cleaning", "Office cleaning; chemical supplies"),
]

# Who in the community reads the impact report: name, email, organisation.
STAKEHOLDERS = [
    ("Clerk to the Town Council", "clerk@towncouncil.example", "Brightwater Town Council"),
    ("Green Valley Trust", "hello@greenvalleytrust.example", "Green Valley Trust (charity)"),
]

FIRST = [
    "Alex",
    "Bea",
    "Callum",
    "Deepa",
    "Emil",
    "Fatima",
    "George",
    "Hannah",
    "Ivan",
    "Jade",
    "Kwame",
    "Laura",
    "Mohammed",
    "Niamh",
    "Oliver",
    "Pooja",
    "Quinn",
    "Rosa",
    "Stefan",
    "Tariq",
    "Una",
    "Victor",
    "Wendy",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Adams",
    "Bell",
    "Clarke",
    "Davies",
    "Edwards",
    "Fox",
    "Gill",
    "Hughes",
    "Iqbal",
    "Jones",
    "Kaur",
    "Lewis",
    "Morgan",
    "Nolan",
    "Owen",
    "Parry",
    "Quayle",
    "Roberts",
]

# title, category, submitter, estimates, customers touched, partners touched
IDEAS: list[tuple[str, str, str, dict[str, float], int, list[str]]] = [
    (
        "Paperless statements for account customers",
        "resource",
        "Aisha Khan",
        {
            "estimated_cost": 1_800,
            "annual_saving": 9_400,
            "sheets_paper": 240_000,
            "kg_co2e": 1_100,
        },
        6,
        ["Inkwell Print"],
    ),
    (
        "LED lighting in the Riverside contact centre",
        "energy",
        "Nora Byrne",
        {"estimated_cost": 6_500, "annual_saving": 3_900, "kwh": 21_000, "kg_co2e": 4_350},
        0,
        ["Facet FM"],
    ),
    (
        "Switch the depot vans to electric",
        "carbon",
        "Jon Walsh",
        {"estimated_cost": 64_000, "annual_saving": 18_000, "kg_co2e": 38_000},
        0,
        ["Leasewell Fleet"],
    ),
    (
        "Food waste collection at the Harbour office",
        "waste",
        "Nora Byrne",
        {"estimated_cost": 900, "annual_saving": 300, "kg_waste": 2_600},
        0,
        ["GreenCycle Waste"],
    ),
    (
        "Call back customers whose repair is delayed",
        "customer_update",
        "Lucy Evans",
        {"estimated_cost": 400, "annual_saving": 1_200},
        5,
        [],
    ),
    (
        "Offer a water-saving kit instead of a meter visit",
        "alternative_solution",
        "Marcus Reid",
        {"estimated_cost": 2_400, "annual_saving": 1_000},
        4,
        ["Swift Parcels"],
    ),
    (
        "Goodwill credit for the missed appointment on Elm Street",
        "goodwill",
        "Lucy Evans",
        {"estimated_cost": 60},
        1,
        [],
    ),
    (
        "Duplex printing by default on every office printer",
        "resource",
        "Ravi Patel",
        {"estimated_cost": 0, "annual_saving": 2_100, "sheets_paper": 85_000},
        0,
        [],
    ),
    (
        "Heating schedule matched to opening hours",
        "energy",
        "Nora Byrne",
        {"estimated_cost": 300, "annual_saving": 5_200, "kwh": 38_000, "kg_co2e": 6_950},
        0,
        ["Facet FM", "Northgrid Energy"],
    ),
    (
        "Refurbish old laptops instead of scrapping them",
        "waste",
        "Ravi Patel",
        {"estimated_cost": 1_500, "annual_saving": 6_000, "kg_waste": 420, "kg_co2e": 7_200},
        0,
        ["ReBoot IT"],
    ),
    (
        "Route planning to cut engineer mileage",
        "carbon",
        "Jon Walsh",
        {"estimated_cost": 7_500, "annual_saving": 11_000, "kg_co2e": 9_800},
        0,
        [],
    ),
    (
        "Video surveys instead of first site visits",
        "resource",
        "Jon Walsh",
        {"estimated_cost": 3_000, "annual_saving": 14_000, "kg_co2e": 5_100},
        8,
        [],
    ),
    (
        "Text customers before an engineer is late",
        "customer_update",
        "Marcus Reid",
        {"estimated_cost": 1_200, "annual_saving": 2_500},
        6,
        [],
    ),
    (
        "Refillable cleaning supplies",
        "waste",
        "Nora Byrne",
        {"estimated_cost": 700, "annual_saving": 450, "kg_waste": 310},
        0,
        ["Brightclean"],
    ),
    (
        "Solar panels on the depot roof",
        "energy",
        "Ravi Patel",
        {"estimated_cost": 48_000, "annual_saving": 9_000, "kwh": 52_000, "kg_co2e": 10_760},
        0,
        ["Northgrid Energy"],
    ),
    (
        "Plain-English letter for billing disputes",
        "process",
        "Aisha Khan",
        {"estimated_cost": 800, "annual_saving": 3_000},
        0,
        [],
    ),
    (
        "Consolidate courier collections to twice a week",
        "carbon",
        "Aisha Khan",
        {"estimated_cost": 0, "annual_saving": 4_300, "kg_co2e": 2_900},
        0,
        ["Swift Parcels"],
    ),
    (
        "Tell customers when a bill will be late",
        "customer_update",
        "Aisha Khan",
        {"estimated_cost": 150, "annual_saving": 900},
        5,
        [],
    ),
    (
        "Recycled paper for the letters we still post",
        "resource",
        "Ravi Patel",
        {"estimated_cost": 1_100, "kg_co2e": 640},
        0,
        ["Inkwell Print"],
    ),
    (
        "Standby shutdown for meeting-room screens",
        "energy",
        "Nora Byrne",
        {"estimated_cost": 250, "annual_saving": 700, "kwh": 4_800, "kg_co2e": 990},
        0,
        [],
    ),
    (
        "Partner a local charity to reuse office furniture",
        "waste",
        "Ravi Patel",
        {"estimated_cost": 200, "kg_waste": 3_400},
        0,
        [],
    ),
    (
        "Alternative payment plan when a discount ends",
        "alternative_solution",
        "Marcus Reid",
        {"estimated_cost": 1_800, "annual_saving": 600},
        3,
        [],
    ),
    (
        "Goodwill gesture for the flooded garden on Mill Lane",
        "goodwill",
        "Marcus Reid",
        {"estimated_cost": 350},
        1,
        [],
    ),
    (
        "Online form for meter readings",
        "process",
        "Lucy Evans",
        {"estimated_cost": 4_000, "annual_saving": 7_500, "sheets_paper": 30_000},
        0,
        [],
    ),
    (
        "Rainwater harvesting for van washing",
        "resource",
        "Jon Walsh",
        {"estimated_cost": 3_600, "annual_saving": 800},
        0,
        [],
    ),
    (
        "Weekly update for customers on the long-term repair list",
        "customer_update",
        "Lucy Evans",
        {"estimated_cost": 300, "annual_saving": 1_500},
        6,
        [],
    ),
    (
        "Electric pool cars for the field surveyors",
        "carbon",
        "Owen Price",
        {"estimated_cost": 9_500, "annual_saving": 3_200, "kg_co2e": 6_300},
        0,
        ["Leasewell Fleet"],
    ),
    (
        "Return packaging to the meter supplier",
        "waste",
        "Jon Walsh",
        {"estimated_cost": 0, "annual_saving": 250, "kg_waste": 900},
        0,
        ["Swift Parcels"],
    ),
    (
        "Explain clearly why a second meter cannot be fitted",
        "alternative_solution",
        "Lucy Evans",
        {"estimated_cost": 500},
        2,
        [],
    ),
    (
        "Move the Harbour office to a green electricity tariff",
        "carbon",
        "Ravi Patel",
        {"estimated_cost": 1_200, "kg_co2e": 15_400},
        0,
        ["Northgrid Energy"],
    ),
]


def email_of(name: str) -> str:
    return f"{name.lower().replace(' ', '.')}@{DOMAIN}"


def seed(*, session: Session) -> dict[str, int]:
    """Create the demo organisation once; a second call finds it and changes nothing."""
    if session.exec(select(Colleague).where(Colleague.email == email_of("Priya Shah"))).first():
        # Records came after the rest of the demo: an older demo gets them once, too.
        records = seed_records(session=session)
        return {
            "colleagues": 0,
            "customers": 0,
            "partners": 0,
            "improvements": 0,
            "records": records,
            "stakeholders": seed_stakeholders(session=session),
            # Policies came later still: an older demo gets them once, too.
            "policies": seed_policies(session=session, email_of=_emails(session)),
            # Initiatives came after the rest of the demo too: an older demo gets them once.
            "initiatives": seed_initiatives(session=session, owner_email=email_of("Priya Shah")),
        }
    rng = random.Random(42)  # the same demo every time
    today = utcnow().date()

    people: dict[str, Colleague] = {}
    for name, team, role, authorities in COLLEAGUES:
        # The head of operations is the fallback approver when nobody's authority covers a request.
        email = settings.fallback_approver if name == "Dana Okafor" else email_of(name)
        colleague = Colleague(
            name=name,
            email=email,
            team=team,
            role=role,
            access=ACCESS.get(name, Access.colleague),
        )
        if name == ABSENT:
            colleague.absent_from, colleague.absent_to = (
                today - timedelta(days=1),
                today + timedelta(days=6),
            )
        session.add(colleague)
        session.flush()
        people[name] = colleague
        assert colleague.id is not None
        for category, limit, level in authorities:
            session.add(
                Authority(
                    colleague_id=colleague.id,
                    category=Category(category),
                    spending_limit=limit,
                    level=level,
                )
            )
    for name, deputy in DEPUTIES.items():
        people[name].deputy_id = people[deputy].id
    for name, manager in MANAGERS.items():
        people[name].manager_id = people[manager].id

    partners = []
    for name, service, footprint in PARTNERS:
        partner = Partner(
            name=name,
            email=f"hello@{name.lower().replace(' ', '')}.example",
            contact_name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            service=service,
            footprint_note=footprint,
        )
        session.add(partner)
        partners.append(partner)

    customers = []
    names = sorted({f"{first} {last}" for first in FIRST for last in LAST})
    for name in rng.sample(names, 50):
        customer = Customer(
            name=name,
            email=f"{name.lower().replace(' ', '.')}@customer.example",
            contact_format=ContactFormat.text if rng.random() < 0.3 else ContactFormat.html,
            language="cy" if rng.random() < 0.1 else "en",
        )
        session.add(customer)
        session.flush()
        customers.append(customer)
        assert customer.id is not None
        for purpose, chance in (
            (Purpose.improvement_updates, 0.8),
            (Purpose.policy_news, 0.5),
            (Purpose.invitations, 0.4),
        ):
            session.add(
                CustomerConsent(
                    customer_id=customer.id,
                    purpose=purpose,
                    granted=rng.random() < chance,
                    channel="import",
                )
            )
    session.flush()

    for title, category, submitter, estimates, n_customers, partner_names in IDEAS:
        submit_improvement(
            session=session,
            data=ImprovementCreate.model_validate(
                {
                    "title": title,
                    "category": category,
                    "description": _description(title, category),
                    "submitter_email": email_of(submitter),
                    "customer_emails": [c.email for c in rng.sample(customers, n_customers)],
                    "partner_emails": [
                        f"hello@{p.lower().replace(' ', '')}.example" for p in partner_names
                    ],
                    **estimates,
                }
            ),
            channel=Channel.cli,
        )
    session.flush()
    for title, story in STORIES.items():
        improvement = session.exec(select(Improvement).where(Improvement.title == title)).one()
        assert improvement.id is not None
        _live(session, improvement.id, story)
    opened = _cases(session, people, customers)
    stakeholders = seed_stakeholders(session=session)
    records = seed_records(session=session)  # commits: the import stores in batches
    policies = seed_policies(session=session, email_of=_emails(session))  # over those processes
    initiatives = seed_initiatives(session=session, owner_email=email_of("Priya Shah"))
    return {
        "colleagues": len(people),
        "customers": len(customers),
        "partners": len(partners),
        "improvements": len(IDEAS),
        "cases": opened,
        "records": records,
        "stakeholders": stakeholders,
        "policies": policies,
        "initiatives": initiatives,
    }


def seed_stakeholders(*, session: Session) -> int:
    """The community stakeholders who get the impact report, each once (they came after the rest
    of the demo, so an older demo gets them too); how many were added. The caller commits."""
    added = 0
    for name, email, organisation in STAKEHOLDERS:
        if session.exec(select(Stakeholder).where(Stakeholder.email == email)).first() is None:
            session.add(Stakeholder(name=name, email=email, organisation=organisation))
            added += 1
    session.flush()
    return added


def _emails(session: Session) -> dict[str, str]:
    """Each demo colleague's email by name (Dana's is the fallback approver's)."""
    return {c.name: c.email for c in session.exec(select(Colleague)).all()}


def _cases(session: Session, people: dict[str, Colleague], customers: list[Customer]) -> int:
    """Customer cases in several states, opened and moved on through the real steps; one has its
    next update fall due a minute after seeding, so the sweep raises it soon after `make up`."""
    now = utcnow()
    days = timedelta(days=1)

    def opened(owner: str, customer: Customer, subject: str, details: str, ago: int) -> int:
        case = open_case(
            session=session, by=people[owner], channel=Channel.cli, customer_email=customer.email,
            subject=subject, details=details, now=now - ago * days,
        )  # fmt: skip
        assert case.id is not None
        return case.id

    on_plan = opened(
        "Lucy Evans", customers[0], "Low water pressure on Mill Lane",
        "Pressure drops every morning; the network team is checking the valve.", 2,
    )  # fmt: skip
    change_case(
        session=session, case_id=on_plan, by=people["Lucy Evans"], channel=Channel.web,
        promised_on=(now + 10 * days).date(), now=now - 2 * days,
    )  # fmt: skip
    due_soon = opened(
        "Marcus Reid", customers[1], "Replacement water meter",
        "The meter reads high; a replacement was promised within two weeks.", 10,
    )  # fmt: skip
    mark_delayed(
        session=session, case_id=due_soon, by=people["Marcus Reid"], channel=Channel.web,
        reason="The meter is on back order from the supplier.",
        next_update_due=now + timedelta(minutes=1), now=now - 3 * days,
    )  # fmt: skip
    updated = opened(
        "Lucy Evans", customers[2], "Billing dispute over estimated readings",
        "Three estimated bills in a row; the customer sent photos of the meter.", 9,
    )  # fmt: skip
    send_update(
        session=session, case_id=updated, by=people["Lucy Evans"], channel=Channel.web,
        subject="Your bills: we are correcting them",
        body=f"Dear {customers[2].name},\n\nThank you for the photos. We are replacing the "
        "estimates with your real readings; the corrected bill follows within a week.\n\n"
        "With best wishes,\nLucy Evans",
        now=now - 2 * days,
    )  # fmt: skip
    delayed = opened(
        "Sam Lee", customers[3], "Sewer odour near the school",
        "Reported by a parent; the drainage contractor has been asked to survey.", 5,
    )  # fmt: skip
    mark_delayed(
        session=session, case_id=delayed, by=people["Sam Lee"], channel=Channel.web,
        reason="The contractor's survey camera is booked until next week.",
        next_update_due=now + 3 * days, now=now - 1 * days,
    )  # fmt: skip
    closed = opened(
        "Mei Chen", customers[4], "Pavement left open after a leak repair",
        "A trench outside number 12 was left coned off for a week.", 14,
    )  # fmt: skip
    change_case(
        session=session, case_id=closed, by=people["Mei Chen"], channel=Channel.web,
        close=True, reason="Reinstated on the 9th; the customer confirmed it is safe.",
        now=now - 4 * days,
    )  # fmt: skip
    # A need that cannot be met: Sam offers two alternatives within his own authority, and the
    # customer's email with the choice link waits in the outbox (the mail page shows it).
    cannot = opened(
        "Sam Lee", customers[5 % len(customers)], "Move the water meter indoors",
        "The customer cannot reach the meter pit to read it; asked for it to be moved inside.", 6,
    )  # fmt: skip
    mark_cannot_meet(
        session=session, case_id=cannot, actor=people["Sam Lee"].email, channel=Channel.web,
        reason="The supply pipe enters the house under a solid floor, so an indoor meter would "
        "mean digging up the kitchen; we would not ask that of anyone.",
        alternatives=[
            AlternativeIn("Fit a smart meter in the pit that sends its own readings", "", 240,
                          "no more readings to take, and bills on real use", 14),
            AlternativeIn("Read the meter for you every quarter", "", 60,
                          "accurate bills with nothing for you to do", 2),
        ],
    )  # fmt: skip
    return 6


# How far some demo improvements have already got, so the dashboard has a history and an impact
# from the start; the rest are left submitted for the flows to route when the stack starts.
STORIES = {
    "Duplex printing by default on every office printer": "completed",
    "Heating schedule matched to opening hours": "completed",
    "Refurbish old laptops instead of scrapping them": "completed",
    "Standby shutdown for meeting-room screens": "completed",
    "Food waste collection at the Harbour office": "in_progress",
    "Text customers before an engineer is late": "in_progress",
    "Plain-English letter for billing disputes": "rejected",
    "Switch the depot vans to electric": "first_level_approved",
}


def _live(session: Session, improvement_id: int, story: str) -> None:
    """Walk one improvement through the real steps, as its approvers and owners would have."""
    requests = route_improvement(
        session=session, improvement_id=improvement_id, actor="route-improvement",
        channel=Channel.flow,
    )  # fmt: skip
    approve = story != "rejected"
    comment = "Good idea, go ahead." if approve else (
        "The letters are being rewritten with the new billing system in spring; "
        "please bring this to that project instead."
    )  # fmt: skip
    assert requests[0].id is not None
    record_decision(
        session=session, approval_id=requests[0].id, approve=approve, comment=comment,
        channel=Channel.email,
    )  # fmt: skip
    outcome = advance_after_decision(
        session=session, improvement_id=improvement_id, actor="advance-improvement"
    )
    if outcome != "approved":
        return
    items = plan_actions(
        session=session, improvement_id=improvement_id, actor="advance-improvement"
    )
    if story != "completed":
        return
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    for item in items:
        for action_id in open_automatic_steps(session=session, improvement_id=improvement_id):
            run_automatic_step(session=session, action_id=action_id)
        session.refresh(item)
        if item.status != "open" or item.id is None:
            continue
        last = item.position == len(items)
        complete_action(
            session=session, action_id=item.id, by="demo", channel=Channel.email,
            measured_saving=_measured(improvement.annual_saving) if last else None,
            measured_kwh=_measured(improvement.kwh) if last else None,
            measured_kg_co2e=_measured(improvement.kg_co2e) if last else None,
            measured_kg_waste=_measured(improvement.kg_waste) if last else None,
            note="Measured over the first month." if last else "Done.",
        )  # fmt: skip
    complete_improvement(
        session=session, improvement_id=improvement_id, actor="advance-improvement"
    )
    announce_completion(session=session, improvement_id=improvement_id)


def _measured(estimate: float) -> float | None:
    """A little less than was estimated, as real results are; nothing where nothing was expected."""
    return round(estimate * 0.9, 1) or None


def _description(title: str, category: str) -> str:
    why = {
        "energy": "It cuts the energy we use to serve customers, and the bills that come with it.",
        "carbon": "It lowers the carbon footprint of how we deliver the service.",
        "waste": "It keeps waste out of landfill and costs us less to dispose of.",
        "resource": "It uses less paper, travel or packaging for the same service.",
        "customer_update": "Customers hear from us before they have to chase us.",
        "alternative_solution": "We cannot meet the request as asked; this is the best option.",
        "goodwill": "A small gesture, within our authority, to put things right.",
        "process": "A simpler process for customers and for the team.",
    }[category]
    return f"{title}. {why}"
