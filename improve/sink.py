"""A local SMTP server for `improve up` without a relay: every message lands in a Maildir."""

import mailbox
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """Accepts every message and files it, as a mail delivery agent would."""

    def __init__(self, path: Path) -> None:
        # Maildir(create=True) makes tmp/new/cur only when the folder itself is new, so make them
        # here: a sink started on an existing (even empty) folder must still be able to file mail.
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(path, create=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # Delivered-To keeps the envelope recipients, which the headers may not show (Bcc).
        delivered = "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        self.maildir.add(delivered.encode() + content)
        return "250 Message accepted for delivery"


def start_sink(*, host: str, port: int, maildir: Path) -> Controller:
    """Start the sink in a background thread; call `.stop()` on the result to end it."""
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port)
    controller.start()
    return controller
