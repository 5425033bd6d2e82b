"""Staff pages for service records: the filtered list evidence links open, and the processes."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from sqlmodel import Session
from starlette.responses import HTMLResponse

from improve.errors import InvalidInput
from models import RECORD_UNITS, RecordKind
from models.db import MAX_INT, get_engine
from tasks import records
from web.render import page

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 100


def _number(text: str, name: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_INT:
        raise InvalidInput({name: "must be a number, as in the address of their page"})
    return int(text)


@router.get("/records")
def record_list(
    request: Request,
    kind: str = "",
    process: str = "",
    customer: str = "",
    partner: str = "",
    site: str = "",
    route: str = "",
    since: str = "",
    until: str = "",
    page_number: Annotated[int, Query(alias="page")] = 1,
) -> HTMLResponse:
    """Records, latest first, filtered as the query string says (detection's evidence links)."""
    if kind and kind not in RecordKind.__members__:
        raise InvalidInput({"kind": f"must be one of {records.KINDS}"})
    filters: dict[str, Any] = {
        "kind": kind or None,
        "process": process or None,
        "customer_id": _number(customer, "customer"),
        "partner_id": _number(partner, "partner"),
        "site": site or None,
        "route": route or None,
        "since": records.parse_when(since, "since"),
        "until": records.parse_when(until, "until"),
    }
    number = max(1, min(page_number, MAX_INT // PAGE_SIZE))
    with Session(get_engine()) as session:
        rows = records.records_query(
            session=session, **filters, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        total = records.count_records(session=session, **filters)
        names = records.process_names(session=session)
    asked = {
        "kind": kind, "process": process, "customer": customer, "partner": partner,
        "site": site, "route": route, "since": since, "until": until,
    }  # fmt: skip
    kept = {name: value for name, value in asked.items() if value}

    def page_link(n: int) -> str:
        return "/records?" + urlencode({**kept, "page": n})

    context = {
        "rows": rows,
        "total": total,
        "asked": asked,
        "kinds": list(RecordKind),
        "units": {str(k): unit for k, unit in RECORD_UNITS.items()},
        "processes": names,
        "first": (number - 1) * PAGE_SIZE + 1,
        "previous": page_link(number - 1) if number > 1 else None,
        "next": page_link(number + 1) if number * PAGE_SIZE < total else None,
    }
    return page(request, "records.html", context)


@router.get("/processes")
def process_list(request: Request) -> HTMLResponse:
    """Each service process with its records counted by kind, each count a link to them."""
    with Session(get_engine()) as session:
        rows = records.process_counts(session=session)
    return page(request, "processes.html", {"rows": rows, "kinds": list(RecordKind)})
