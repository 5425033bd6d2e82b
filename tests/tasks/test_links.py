"""Links that act: long random tokens, stored hashed, single use, expiring, bound to one request."""

from datetime import timedelta

import pytest
from sqlmodel import Session

from improve.errors import LinkRefused
from models import ActionItem, ApprovalRequest, ApprovalStatus
from models.db import utcnow
from tasks.links import check_action_link, check_approval_link, hash_token, new_token
from tests.factories import make_approver, make_colleague, make_improvement


def make_request(session: Session, token_hash: str, **fields: object) -> ApprovalRequest:
    improvement = make_improvement(session, make_colleague(session))
    approval = ApprovalRequest(
        improvement_id=improvement.id,
        approver_id=make_approver(session).id,
        level=1,
        token_hash=token_hash,
        expires_at=fields.pop("expires_at", utcnow() + timedelta(days=14)),
        **fields,
    )
    session.add(approval)
    session.commit()
    session.refresh(approval)
    return approval


def test_tokens_are_long_random_and_only_their_hash_is_kept() -> None:
    tokens = {new_token()[0] for _ in range(1000)}
    assert len(tokens) == 1000
    token, token_hash = new_token()
    assert len(token) >= 43  # 32 random bytes, url-safe base64: 256 bits
    assert token_hash == hash_token(token) and token not in token_hash
    assert len(token_hash) == 64


def test_the_right_token_opens_its_own_request(session: Session) -> None:
    token, token_hash = new_token()
    approval = make_request(session, token_hash)
    assert (
        check_approval_link(session=session, approval_id=approval.id, token=token).id == approval.id
    )


def test_a_tampered_token_is_refused_as_not_valid(session: Session) -> None:
    token, token_hash = new_token()
    approval = make_request(session, token_hash)
    with pytest.raises(LinkRefused) as refused:
        check_approval_link(session=session, approval_id=approval.id, token=token[:-2] + "xx")
    assert (refused.value.kind, refused.value.status_code) == ("tampered", 404)
    assert "cut short or changed" in str(refused.value)


def test_another_persons_token_is_refused_as_foreign(session: Session) -> None:
    mine, my_hash = new_token()
    theirs, their_hash = new_token()
    my_request = make_request(session, my_hash)
    make_request(session, their_hash)
    with pytest.raises(LinkRefused) as refused:
        check_approval_link(session=session, approval_id=my_request.id, token=theirs)
    assert (refused.value.kind, refused.value.status_code) == ("foreign", 403)


def test_a_used_token_is_refused_and_says_when(session: Session) -> None:
    token, token_hash = new_token()
    approval = make_request(
        session, token_hash, status=ApprovalStatus.approved, decided_at=utcnow()
    )
    with pytest.raises(LinkRefused) as refused:
        check_approval_link(session=session, approval_id=approval.id, token=token)
    assert (refused.value.kind, refused.value.status_code) == ("used", 410)
    assert "approved on" in str(refused.value)


def test_an_expired_token_is_refused_with_its_date(session: Session) -> None:
    token, token_hash = new_token()
    expired = utcnow() - timedelta(minutes=1)
    approval = make_request(session, token_hash, expires_at=expired)
    with pytest.raises(LinkRefused) as refused:
        check_approval_link(session=session, approval_id=approval.id, token=token)
    assert (refused.value.kind, refused.value.status_code) == ("expired", 410)
    assert f"expired on {expired:%Y-%m-%d}" in str(refused.value)


def test_an_approval_token_cannot_complete_an_action(session: Session) -> None:
    token, token_hash = new_token()
    make_request(session, token_hash)
    improvement = make_improvement(session, make_colleague(session))
    _, action_hash = new_token()
    action = ActionItem(
        improvement_id=improvement.id, position=1, title="Book the survey",
        due_on=utcnow().date(), token_hash=action_hash,
        token_expires_at=utcnow() + timedelta(days=30),
    )  # fmt: skip
    session.add(action)
    session.commit()
    with pytest.raises(LinkRefused) as refused:
        check_action_link(session=session, action_id=action.id, token=token)
    assert refused.value.kind == "foreign"
