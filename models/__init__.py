"""SQLModel tables, the database engine and session."""

from models.access import Access, ApiToken, RetiredLink, SignInLink, WebSession
from models.action import ActionItem, ActionStatus
from models.approval import ApprovalRequest, ApprovalStatus
from models.case import (
    OPEN_STATUSES,
    Alternative,
    AlternativeStatus,
    Case,
    CaseNote,
    CaseStatus,
    CaseUpdate,
    HelpRequest,
    HelpStatus,
)
from models.idempotency import IdempotencyKey
from models.improvement import (
    Category,
    Channel,
    Estimates,
    Improvement,
    ImprovementBase,
    ImprovementCreate,
    ImprovementCustomer,
    ImprovementPartner,
    ImprovementPublic,
    Source,
    Status,
    Transition,
)
from models.outbox import OutboxEmail, OutboxStatus
from models.people import (
    Authority,
    Colleague,
    ContactFormat,
    Customer,
    CustomerConsent,
    Partner,
    Purpose,
)

__all__ = [
    "OPEN_STATUSES",
    "Alternative",
    "AlternativeStatus",
    "Case",
    "CaseNote",
    "CaseStatus",
    "CaseUpdate",
    "HelpRequest",
    "HelpStatus",
    "Access",
    "ApiToken",
    "RetiredLink",
    "SignInLink",
    "WebSession",
    "ActionItem",
    "ActionStatus",
    "ApprovalRequest",
    "ApprovalStatus",
    "Authority",
    "Category",
    "Channel",
    "Colleague",
    "ContactFormat",
    "Customer",
    "CustomerConsent",
    "Estimates",
    "IdempotencyKey",
    "Improvement",
    "ImprovementBase",
    "ImprovementCreate",
    "ImprovementCustomer",
    "ImprovementPartner",
    "ImprovementPublic",
    "OutboxEmail",
    "OutboxStatus",
    "Partner",
    "Purpose",
    "Source",
    "Status",
    "Transition",
]
