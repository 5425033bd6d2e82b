"""An email's wire form written out directly: headers and MIME parts as the bytes an SMTP server
takes (tasks/mail.py decides what goes in them).

The standard library's EmailMessage parses every header it is given into a tree and folds it back
when the message is sent: for an outbox sending thousands of emails, building and flattening one
cost more than sending it (about 6 ms an email, against well under 1 ms here). Improve sends a few
fixed shapes, so they are written out as RFC 5322 and RFC 2045-2047 spell them: text beyond ASCII in
a header as encoded words; a text part as 7bit when it can be, quoted-printable otherwise, so the
message is 7-bit clean for any relay; images in base64.
"""

import base64
import binascii
import secrets
from email.header import Header

CRLF = b"\r\n"
# RFC 5322: a header line should fit in 78 characters and a line of any kind must fit in 998.
FOLD_AT = 78
LONGEST_LINE = 998


def header(name: str, value: str, *, verbatim: bool = False) -> bytes:
    """One header line, folded where it is long. Text beyond ASCII becomes RFC 2047 encoded
    words, unless `verbatim` (an address or a link, which must arrive as written: an address
    beyond ASCII is sent as UTF-8 under SMTPUTF8). `value` must be one line already."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header must be one line: {value!r}")
    line = f"{name}: {value}"
    if verbatim:
        if len(line.encode()) > LONGEST_LINE:
            raise ValueError(f"the {name} header is longer than a line may be: {value[:80]!r}…")
        return line.encode() + CRLF
    if value.isascii() and "=?" not in value:
        return _fold(line).encode() + CRLF
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=FOLD_AT)
    return f"{name}: {encoded}".encode() + CRLF


def _fold(line: str) -> str:
    """Plain text folded before the space that would take a line past FOLD_AT (a word longer
    than that stays whole); unfolding gives the line back."""
    if len(line) <= FOLD_AT:
        return line
    folded, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > FOLD_AT:
            folded.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    return "\r\n".join([*folded, current])


def text_part(subtype: str, text: str) -> bytes:
    """A text/<subtype> part in UTF-8: 7bit when it is ASCII in short enough lines, else
    quoted-printable."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode()
    if data.isascii() and max(map(len, data.split(b"\n"))) <= LONGEST_LINE:
        encoding, body = "7bit", data
    else:
        encoding, body = "quoted-printable", binascii.b2a_qp(data, istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
        + _crlf(body)
    )


def image_part(png: bytes, content_id: str, filename: str) -> bytes:
    """An inline PNG that HTML beside it shows as <img src="cid:...">."""
    return (
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        + header("Content-ID", f"<{content_id}>", verbatim=True)
        + header("Content-Disposition", f'inline; filename="{filename}"', verbatim=True)
        + CRLF
        + _crlf(base64.encodebytes(png))
    )


def multipart(subtype: str, parts: list[bytes]) -> bytes:
    """A multipart/<subtype> of `parts`, under a boundary none of them contains."""
    boundary = f"=_{secrets.token_hex(16)}".encode()
    while any(boundary in part for part in parts):
        boundary = f"=_{secrets.token_hex(16)}".encode()
    return (
        b'Content-Type: multipart/' + subtype.encode() + b'; boundary="' + boundary + b'"\r\n\r\n'
        + b"".join(b"--" + boundary + CRLF + part + CRLF for part in parts)
        + b"--" + boundary + b"--" + CRLF
    )  # fmt: skip


def message(headers: list[bytes], body: bytes) -> bytes:
    """The whole email: its headers, then the body part (which opens with its own Content-Type)."""
    return b"".join(headers) + b"MIME-Version: 1.0\r\n" + body


def _crlf(data: bytes) -> bytes:
    body = data.replace(b"\r\n", b"\n").replace(b"\n", CRLF)
    return body if body.endswith(CRLF) else body + CRLF
