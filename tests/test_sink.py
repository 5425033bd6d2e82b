"""The local mail sink that `improve up` starts when no relay is configured."""

import mailbox
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from improve.sink import start_sink
from tests.smtpd import free_port


async def test_the_sink_files_each_message_even_in_a_folder_that_already_exists(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mailsink"
    folder.mkdir()  # as left by an earlier run, or made by the web app before the sink started
    port = free_port()
    sink = start_sink(host="127.0.0.1", port=port, maildir=folder)
    try:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@x.org", "b@y.org", "Hello"
        message.set_content("Approve here: http://127.0.0.1:8000/approvals/1/abc")
        await aiosmtplib.send(
            message, hostname="127.0.0.1", port=port, recipients=["b@y.org", "c@z.org"]
        )
    finally:
        sink.stop()

    [filed] = list(mailbox.Maildir(folder, create=False))
    assert filed["Subject"] == "Hello"
    assert filed.get_all("Delivered-To") == ["b@y.org", "c@z.org"]
