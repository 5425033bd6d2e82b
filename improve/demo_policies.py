"""The demo's policy library: three policies over its four processes, one already published."""

from sqlmodel import Session, col, select

from models import Improvement, Partner, Policy
from tasks.policies import add_policy, link_improvement, publish

# title, owner (demo colleague), summary, processes, improvements serving it (demo titles)
POLICIES: list[tuple[str, str, str, list[str], list[str]]] = [
    (
        "Paperless by default",
        "Priya Shah",
        "Bills, statements and letters go by email to every customer who has agreed to it; paper "
        "is for those who ask, and what we still post is on recycled paper.",
        ["billing"],
        [
            "Paperless statements for account customers",
            "Recycled paper for the letters we still post",
            "Duplex printing by default on every office printer",
        ],
    ),
    (
        "Sustainable fleet",
        "Priya Shah",
        "Fewer miles and cleaner ones: routes planned to cut mileage, surveys by video where a "
        "visit is not needed, our vans electric by 2030, and partners' deliveries consolidated.",
        ["field visits", "deliveries"],
        [
            "Switch the depot vans to electric",
            "Route planning to cut engineer mileage",
            "Video surveys instead of first site visits",
            "Consolidate courier collections to twice a week",
        ],
    ),
    (
        "Waste and recycling",
        "Ravi Patel",
        "Reduce, reuse, recycle: returnable packaging with our suppliers, food waste collected, "
        "old equipment refurbished, and energy used only when our buildings are open.",
        ["facilities", "deliveries"],
        [
            "Food waste collection at the Harbour office",
            "Refurbish old laptops instead of scrapping them",
            "Refillable cleaning supplies",
        ],
    ),
]
# The partners who asked to hear of our policies.
HEARING = ("Swift Parcels", "GreenCycle Waste", "Leasewell Fleet")


def seed_policies(*, session: Session, email_of: dict[str, str]) -> int:
    """The three policies, once (found by title afterwards); "Paperless by default" published
    as version 1.0, so its notices wait in the outbox for the first sweep. Returns how many were
    added."""
    if session.exec(select(Policy).where(Policy.title == POLICIES[0][0])).first():
        return 0
    for partner in session.exec(select(Partner).where(col(Partner.name).in_(HEARING))).all():
        partner.hears_policies = True
        session.add(partner)
    for title, owner, summary, processes, served in POLICIES:
        slug = title.lower().replace(" ", "-")
        policy = add_policy(
            session=session,
            title=title,
            summary=summary,
            link=f"https://brightwater.example/policies/{slug}",
            owner_email=email_of[owner],
            processes=processes,
        )
        assert policy.id is not None
        for improvement in session.exec(
            select(Improvement).where(col(Improvement.title).in_(served))
        ).all():
            assert improvement.id is not None
            link_improvement(session=session, policy_id=policy.id, improvement_id=improvement.id)
        if title == "Paperless by default":
            publish(
                session=session,
                policy_id=policy.id,
                version="1.0",
                changes="First published: email is the default for bills and statements.",
                actor=email_of[owner],
            )
    session.commit()
    return len(POLICIES)
