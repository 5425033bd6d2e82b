"""Fixtures for the domain tests: the small organisation the approval tests work in."""

import pytest
from sqlmodel import Session

from tests.tasks.helpers import Org, make_org


@pytest.fixture
def org(session: Session, monkeypatch: pytest.MonkeyPatch) -> Org:
    return make_org(session, monkeypatch)
