"""schemathesis over the OpenAPI document with every check, signed in with a real API token:
no server error, no answer the document does not describe, no valid request refused, no invalid
one accepted.

The document is the app's own (`create_app().openapi()`, which /openapi.json serves to signed-in
callers; the first test checks they are the same) and requests go to the app in process. Each
test starts from empty tables, with an operations colleague (who may submit for anyone) holding
the token, another colleague, an approver for every category, a customer and a partner.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case

from models import Category
from models.db import MAX_INT, session_scope
from tasks import policies
from tasks.access import create_api_token
from tests.factories import (
    make_approver,
    make_colleague,
    make_customer,
    make_operator,
    make_partner,
    make_process,
)
from web.app import create_app
from web.limits import reset_all

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20240611,
        # Every check and every phase schemathesis has, whatever its defaults become.
        "checks": {"enabled": True},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True},
        },
        "generation": {"max-examples": 60, "deterministic": True},
    }
)
APP = create_app()
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP  # as from_asgi does: requests go to the app in process
# The same requests on every run, no time limit per request (CI machines are small), nothing
# written to .hypothesis/. The tables are emptied per test, not per example, which is fine:
# examples only add rows, and the people the `people` fixture made stay.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# The dev-only /api/mail route (web/mailsink.py) documents FastAPI's own 422 body and neither
# 401 nor 429, while the app answers every API refusal with ErrorBody. It needs the API's
# refusals: `responses={status: ERRORS[status] for status in EVERY_ROUTE}` from web.api.


@dataclass
class People:
    """Who exists, and the header that signs in as the operations colleague."""

    colleagues: tuple[str, ...]
    customers: tuple[str, ...]
    partners: tuple[str, ...]
    headers: dict[str, str]


@pytest.fixture
def people() -> People:
    with session_scope() as session:
        operator = make_operator(session)
        colleague = make_colleague(session, "Asha Patel")
        for category in Category:
            make_approver(session, category=category, limit=1e12)
        customer = make_customer(session)
        partner = make_partner(session)
        make_process(session, "billing")  # for the policies the examples add
        _, token = create_api_token(session=session, email=operator.email, name="schemathesis")
        return People(
            colleagues=(operator.email, colleague.email),
            customers=(customer.email,),
            partners=(partner.email,),
            headers={"Authorization": f"Bearer {token}"},
        )


def _names_someone(value: object) -> bool:
    """A valid email field that names a person (blank means yourself; invalid stays invalid)."""
    return (
        isinstance(value, str) and bool(value.strip()) and "\x00" not in value and len(value) <= 254
    )


def _known(value: Any, emails: tuple[str, ...]) -> Any:
    return emails[len(value) % len(emails)] if _names_someone(value) else value


def with_known_people(case: Case, people: People) -> None:
    """The document cannot say who works here or who our customers are: each valid email in a
    submission becomes one of someone who exists, so a valid request can succeed. Values the
    document calls invalid are left as they are. (Unknown people are a 422 naming the field:
    tests/web/test_api.py checks that.)"""
    if (case.method, case.path) != ("POST", "/api/improvements") or not isinstance(case.body, dict):
        return
    body = case.body
    if "submitter_email" in body:
        body["submitter_email"] = _known(body["submitter_email"], people.colleagues)
    for field, emails in (
        ("customer_emails", people.customers),
        ("partner_emails", people.partners),
    ):
        items = body.get(field)
        if isinstance(items, list):
            body[field] = [_known(item, emails) for item in items]


# Activities whose factor the shipped set (uk-2025, in force in these tests) does not have.
UNSHIPPED = {"gas", "diesel", "petrol"}


def with_shipped_factors(case: Case) -> None:
    """The document cannot say which factors the set in force has: a valid activity whose factor
    the shipped set lacks becomes letters, so a valid request can succeed. (A missing factor is
    a 422 naming the line: tests/web/test_estimates.py checks that.)"""
    if (case.method, case.path) != ("POST", "/api/improvements") or not isinstance(case.body, dict):
        return
    lines = case.body.get("activities")
    for line in lines if isinstance(lines, list) else ():
        if isinstance(line, dict) and str(line.get("activity")) in UNSHIPPED:
            line["activity"] = "letters"


def with_known_case_people(case: Case, people: People) -> None:
    """The same for cases: the customer and the owner named become people who exist."""
    if not case.path.startswith("/api/cases") or not isinstance(case.body, dict):
        return
    body = case.body
    if "customer_email" in body:
        body["customer_email"] = _known(body["customer_email"], people.customers)
    if "owner_email" in body:
        body["owner_email"] = _known(body["owner_email"], people.colleagues)


def with_known_initiative_people(case: Case, people: People) -> None:
    """The same for initiatives: the owner and the people invited exist, and the improvement an
    initiative serves is left out, as the document cannot say which ones exist. (Unknown ones are
    a 422 naming the field: tests/web/test_invitations.py checks that.)"""
    if not case.path.startswith("/api/initiatives") or not isinstance(case.body, dict):
        return
    body = case.body
    if "owner_email" in body:
        body["owner_email"] = _known(body["owner_email"], people.colleagues)
    wanted = body.get("improvement_id")
    whole = isinstance(wanted, int | float) and not isinstance(wanted, bool)
    if whole and float(wanted).is_integer() and 1 <= wanted <= MAX_INT:  # invalid stays invalid
        body["improvement_id"] = None
    for field, emails in (
        ("customer_emails", people.customers),
        ("partner_emails", people.partners),
    ):
        items = body.get(field)
        if isinstance(items, list):
            body[field] = [_known(item, emails) for item in items]


def _future(value: Any) -> Any:
    """A valid date-time moved to tomorrow; anything else left as it is."""
    if not isinstance(value, str):
        return value
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return value
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


def with_future_times(case: Case) -> None:
    """The document cannot say what "now" is: a valid next_update_due becomes a future one.
    (A past one is a 422 naming the field: tests/tasks/test_cases.py checks that.)"""
    if not case.path.startswith("/api/cases") or not isinstance(case.body, dict):
        return
    for body in (case.body, case.body.get("delay")):
        if isinstance(body, dict) and "next_update_due" in body:
            body["next_update_due"] = _future(body["next_update_due"])


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def with_days_in_order(case: Case) -> None:
    """The document cannot say that `since` comes before `until` (or before today, when until is
    left out): a valid since after it is moved back to it. (A since after until is a 422 naming
    since: tests/web/test_partners.py checks that.)"""
    query = case.query or {}
    since, until = _day(query.get("since")), _day(query.get("until"))
    if since is None or "until" in query and until is None:
        return
    latest = until or datetime.now(UTC).date()
    if since > latest:
        query["since"] = latest.isoformat()


def with_fresh_key(case: Case) -> None:
    """Examples repeat an Idempotency-Key with other bodies, which is a 422 the document cannot
    foresee: each valid key becomes a new one. Invalid keys stay invalid. (Reused keys are a 422
    naming the header, and repeats are replayed: tests/web/test_api.py checks both.)"""
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(r"[!-~]{1,200}", key):
        case.headers["Idempotency-Key"] = uuid4().hex


def with_policies_free(case: Case, people: People) -> None:
    """The document cannot say who works here, which processes there are, or which titles and
    versions are taken: a valid owner becomes a colleague, each valid process name the one
    process, a valid title and version unused ones. Invalid values stay invalid. (Each is a 422
    or 409 naming the field: tests/web/test_policies.py checks them.)"""
    if not case.path.startswith("/api/policies") or not isinstance(case.body, dict):
        return
    body = case.body
    if "owner_email" in body:
        body["owner_email"] = _known(body["owner_email"], people.colleagues)
    names = body.get("processes")
    if isinstance(names, list):
        body["processes"] = [
            "billing" if _names_someone(name) and len(name) <= 80 else name for name in names
        ]
    title = body.get("title")
    if isinstance(title, str) and "\x00" not in title and title.strip() and len(title) <= 200:
        body["title"] = f"{title[:160]} {uuid4().hex}"
    version = body.get("version")
    if isinstance(version, str) and re.fullmatch(policies.VERSION_PATTERN, version):
        body["version"] = uuid4().hex[:12]


def call_and_validate(case: Case, people: People) -> None:
    # The ignored_auth check offers refused tokens on purpose, and web.limits would soon answer
    # 429 to everything from this client; the limit is tested on its own, and below.
    reset_all()
    with_known_people(case, people)
    with_shipped_factors(case)
    with_known_case_people(case, people)
    with_known_initiative_people(case, people)
    with_future_times(case)
    with_days_in_order(case)
    with_fresh_key(case)
    with_policies_free(case, people)
    case.call_and_validate(headers=people.headers)


def test_the_document_is_the_one_served_to_a_signed_in_caller(people: People) -> None:
    served = schemathesis.openapi.from_asgi("/openapi.json", APP, headers=people.headers)
    assert served.raw_schema == schema.raw_schema


@schema.exclude(path="/api/mail").parametrize()
@FUZZ
def test_api(case: Case, people: People) -> None:
    call_and_validate(case, people)


@schema.include(path="/api/mail").parametrize()
@FUZZ
def test_mail_api(case: Case, people: People) -> None:
    call_and_validate(case, people)


def with_linked_ids_present(case: Case) -> None:
    """A link from an answer whose id is null (an initiative that serves no improvement) names
    nothing to read: ask for the first one instead, which exists or is a documented 404."""
    for name, value in (case.path_parameters or {}).items():
        if value is None:
            case.path_parameters[name] = 1


class Workflow(schema.exclude(path="/api/mail").as_state_machine()):  # type: ignore[misc]
    """Calls linked by what earlier answers returned: submit one, then read it back."""

    people: People

    def before_call(self, case: Case) -> None:
        reset_all()
        with_linked_ids_present(case)
        with_known_people(case, self.people)
        with_shipped_factors(case)
        with_known_case_people(case, self.people)
        with_known_initiative_people(case, self.people)
        with_future_times(case)
        with_days_in_order(case)
        with_fresh_key(case)
        with_policies_free(case, self.people)

    def get_call_kwargs(self, case: Case) -> dict[str, Any]:
        return {"headers": self.people.headers}


def test_stateful(people: People) -> None:
    Workflow.people = people
    Workflow.run(settings=settings(FUZZ, max_examples=25, stateful_step_count=4))


@pytest.mark.parametrize(
    ("path", "method", "request_data"),
    [
        ("/api/improvements", "GET", {}),
        (
            "/api/improvements",
            "POST",
            {"body": {"title": "Solar", "category": "energy"}, "media_type": "application/json"},
        ),
        ("/api/improvements/{improvement_id}", "GET", {"path_parameters": {"improvement_id": 1}}),
    ],
)
def test_refusals_before_the_request_is_read_are_documented(
    path: str, method: str, request_data: dict[str, Any]
) -> None:
    """Generated requests all carry the token, so 401 and 429 are checked here: without a token,
    then with wrong ones until the client is stopped."""
    reset_all()
    operation = schema[path][method]
    assert operation.Case(**request_data).call_and_validate().status_code == 401
    for n in range(100):
        wrong = {"Authorization": f"Bearer imp_wrong{n}"}
        response = operation.Case(**request_data).call_and_validate(headers=wrong)
        if response.status_code != 401:
            break
    assert response.status_code == 429
