"""A real SMTP server in the test process that records what it receives and can refuse on cue."""

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    options: list[str] = field(default_factory=list)  # MAIL FROM's, e.g. SMTPUTF8
    wire: bytes = b""  # the message as it came

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part in {self.subject!r}"
        return str(part.get_content())

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")


@dataclass
class RecordingHandler:
    """Keeps every accepted message; `replies` are answered to DATA instead of accepting, and
    `refused_recipients` (address: reply) to RCPT TO for those addresses."""

    received: list[Received] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    refused_recipients: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            refusal = self.refused_recipients.get(address)
        if refusal:
            return refusal
        # What aiosmtpd does itself for a handler without this hook.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
            message = email.message_from_bytes(
                envelope.original_content or b"", policy=email.policy.default
            )
            assert isinstance(message, EmailMessage)
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    message,
                    list(envelope.mail_options),
                    envelope.original_content or b"",
                )
            )
        return "250 OK"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = RecordingHandler()
        self.controller: Controller | None = None

    def start(self) -> None:
        # SMTPUTF8 on, as most relays have it: an address beyond ASCII can arrive.
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def refuse_next(self, *replies: str) -> None:
        self.handler.replies.extend(replies)

    def refuse_recipient(self, address: str, reply: str) -> None:
        """Answer `reply` (e.g. "550 5.1.1 No such user") to RCPT TO `address` until accepted."""
        with self.handler.lock:
            self.handler.refused_recipients[address] = reply

    def accept_recipient(self, address: str) -> None:
        with self.handler.lock:
            self.handler.refused_recipients.pop(address, None)

    def clear(self) -> None:
        self.handler.received.clear()
        self.handler.replies.clear()
        self.handler.refused_recipients.clear()
