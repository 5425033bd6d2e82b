"""SMTP connections for the outbox: each reused for many emails, opened again when the server
dropped it, and a small pool of them so a big batch goes out over several at once."""

from email.utils import parseaddr

import aiosmtplib

from improve.settings import settings


class RelayUnavailable(Exception):
    """The SMTP server cannot be reached or will not take mail from us: no row is at fault."""


def _where() -> str:
    return f"{settings.smtp_host}:{settings.smtp_port}"


class Connection:
    """One SMTP connection, opened on first use and again when the server dropped it."""

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None
        self.sender = parseaddr(settings.mail_from)[1]

    async def _open(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            timeout=settings.smtp_timeout_seconds,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            username=settings.smtp_user or None,
            password=settings.smtp_password.get_secret_value() or None,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            # A 421 greeting or a refused login reads best as the server put it.
            said = (
                f"{exc.code} {exc.message}"
                if isinstance(exc, aiosmtplib.SMTPResponseException)
                else str(exc)
            )
            raise RelayUnavailable(f"cannot connect to {_where()}: {said}") from exc
        return smtp

    async def send(self, message: bytes, recipient: str) -> None:
        """Send one email (tasks/mail.encode_message); RelayUnavailable when the fault is the
        server's, not the email's."""
        # An address beyond ASCII travels as UTF-8, which the server must agree to (RFC 6531).
        utf8 = ["SMTPUTF8"] if not (self.sender + recipient).isascii() else []
        if self.smtp is None or not self.smtp.is_connected:
            self.smtp = await self._open()
        try:
            await self.smtp.sendmail(self.sender, [recipient], message, mail_options=utf8)
        except aiosmtplib.SMTPServerDisconnected:
            # Relays close idle or long-lived connections; one fresh try tells that apart from
            # a server that is down.
            self.smtp = await self._open()
            try:
                await self.smtp.sendmail(self.sender, [recipient], message, mail_options=utf8)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
                raise RelayUnavailable(f"{_where()} dropped the connection: {exc}") from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise RelayUnavailable(f"{_where()} timed out: {exc}") from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            # Refusing our own From address is a relay setting, not this email's fault: failing
            # each row on it would throw away the whole outbox.
            raise RelayUnavailable(
                f"{_where()} refused the sender: {exc.code} {exc.message}"
            ) from exc

    async def close(self) -> None:
        if self.smtp is not None and self.smtp.is_connected:
            try:
                await self.smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.smtp.close()
        self.smtp = None


class Pool:
    """Up to settings.smtp_pool_size connections, each opened when first used, all closed at
    the end of a send."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or settings.smtp_pool_size
        self._connections: list[Connection] = []

    def connections(self, wanted: int) -> list[Connection]:
        """`wanted` connections (at most the pool's size), the ones already open first."""
        wanted = max(1, min(wanted, self.size))
        while len(self._connections) < wanted:
            self._connections.append(Connection())
        return self._connections[:wanted]

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()
