"""The wire form of an email (tasks/mime.py), read back by the standard library's parser and sent
to a real SMTP server: what is written is what a mail client reads."""

import base64
import email
import email.policy
from email.message import EmailMessage

import pytest
from sqlmodel import Session

from models import OutboxEmail
from tasks import mime
from tasks.mail import build_message, encode_message, queue_email
from tasks.outbox import send_due
from tests.smtpd import SmtpServer


def parse(wire: bytes) -> EmailMessage:
    """As a mail client reads it: lines end in "\n" once off the wire."""
    message = email.message_from_bytes(wire.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def lines(wire: bytes) -> list[bytes]:
    assert b"\n" not in wire.replace(b"\r\n", b""), "a bare line feed"
    return wire.split(b"\r\n")


def test_a_short_ascii_header_is_one_line_as_written() -> None:
    assert mime.header("Subject", "Approved: IMP-7") == b"Subject: Approved: IMP-7\r\n"


def test_a_long_subject_is_folded_at_its_spaces_and_reads_back_whole() -> None:
    subject = " ".join(["Paperless statements for account customers"] * 5)
    wire = mime.header("Subject", subject)

    assert all(len(line) <= mime.FOLD_AT for line in lines(wire))
    assert b"=?" not in wire  # plain text stays plain
    assert str(parse(wire + b"\r\n")["Subject"]) == subject


@pytest.mark.parametrize(
    "subject",
    [
        "Café bins – save £5 a week",
        "Biniau caffi: arbed £5 yr wythnos " * 4,
        "Looks =?encoded?= but",
    ],
)
def test_text_beyond_ascii_in_a_header_is_encoded_words_and_reads_back_as_written(
    subject: str,
) -> None:
    wire = mime.header("Subject", subject)

    assert wire.isascii() and b"=?utf-8?" in wire
    assert all(len(line) <= mime.FOLD_AT for line in lines(wire))
    assert str(parse(wire + b"\r\n")["Subject"]) == subject


def test_a_header_is_refused_a_line_break_and_a_verbatim_one_its_length() -> None:
    with pytest.raises(ValueError, match="one line"):
        mime.header("Subject", "one\r\nBcc: x@example.com")
    with pytest.raises(ValueError, match="longer than a line"):
        mime.header("List-Unsubscribe", "<https://example.org/" + "x" * 1000 + ">", verbatim=True)
    url = "<https://improve.example.org/unsubscribe/1/" + "t" * 120 + ">"
    assert (
        mime.header("List-Unsubscribe", url, verbatim=True)
        == f"List-Unsubscribe: {url}\r\n".encode()
    )


def test_ascii_text_in_short_lines_goes_as_it_is() -> None:
    part = mime.text_part("plain", "Dear Dana,\n\n-- \nImprove\n")

    assert b"Content-Transfer-Encoding: 7bit" in part
    assert part.endswith(b"Dear Dana,\r\n\r\n-- \r\nImprove\r\n")


def test_text_beyond_ascii_or_with_a_very_long_line_is_quoted_printable_and_reads_back() -> None:
    html = "<p>" + "Arbed £5 – " * 200 + "</p>\n<p>=_ and = and . alone:</p>\n.\n"
    part = mime.text_part("html", html)

    assert b"Content-Transfer-Encoding: quoted-printable" in part
    assert part.isascii() and all(len(line) <= 76 for line in lines(part))
    message = parse(b"MIME-Version: 1.0\r\n" + part)
    assert message.get_content() == html


def test_a_multipart_has_a_boundary_none_of_its_parts_holds() -> None:
    parts = [mime.text_part("plain", "one\n"), mime.text_part("html", "<p>two</p>\n")]
    message = parse(b"MIME-Version: 1.0\r\n" + mime.multipart("alternative", parts))

    assert [p.get_content() for p in message.iter_parts()] == ["one\n", "<p>two</p>\n"]
    assert message.get_boundary() not in b"".join(parts).decode()


def test_an_inline_image_reads_back_byte_for_byte_under_its_content_id() -> None:
    png = bytes(range(256)) * 40
    related = mime.multipart(
        "related",
        [
            mime.text_part("html", '<img src="cid:co2@improve">'),
            mime.image_part(png, "co2@improve", "co2.png"),
        ],
    )
    message = parse(b"MIME-Version: 1.0\r\n" + related)

    html, image = message.iter_parts()
    assert image["Content-ID"] == "<co2@improve>"
    assert image.get_content_disposition() == "inline" and image.get_filename() == "co2.png"
    assert image.get_content() == png


def _row(session: Session, *, to: str, context: dict[str, object]) -> OutboxEmail:
    row = queue_email(
        session=session,
        key=f"test:mime:{to}",
        to=to,
        template="partner_notice",
        context={
            "partner_name": "GreenPost Ltd",
            "contact_name": "Dana Okafor",
            "reference": "IMP-7",
            "title": "Fewer letters",
            "summary": "Statements by email.",
            "impact_lines": ["1,000 fewer letters a year"],
            **context,
        },
    )
    session.commit()
    return row


def test_a_whole_email_is_seven_bit_with_crlf_lines_and_reads_back_as_built(
    session: Session,
) -> None:
    row = _row(session, to="dana@example.net", context={"title": "Llai o lythyrau – £5"})
    wire = encode_message(row)

    assert wire.isascii() and all(len(line) <= mime.LONGEST_LINE for line in lines(wire))
    message = build_message(row)
    assert str(message["Subject"]).endswith("Llai o lythyrau – £5")
    assert message["To"] == "dana@example.net" and message["MIME-Version"] == "1.0"
    assert "Llai o lythyrau – £5" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_an_address_beyond_ascii_is_sent_as_utf8_to_a_server_that_takes_it(
    session: Session, smtp: SmtpServer
) -> None:
    _row(session, to="zoë@example.net", context={})

    assert (await send_due())["sent"] == 1

    [received] = smtp.received
    assert received.recipients == ["zoë@example.net"] and "SMTPUTF8" in received.options
    assert received.message["To"] == "zoë@example.net"


async def test_images_sent_inline_arrive_as_they_were(session: Session, smtp: SmtpServer) -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    _row(
        session,
        to="dana@example.net",
        context={"inline_images": {"dot@improve": base64.b64encode(png).decode()}},
    )

    await send_due()

    [received] = smtp.received
    html = received.message.get_body(("html",))
    assert html is not None
    [image] = [p for p in received.message.walk() if p.get_content_type() == "image/png"]
    assert image.get_content() == png and image["Content-ID"] == "<dot@improve>"
