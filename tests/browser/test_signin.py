"""A colleague signs in with an emailed link, submits an idea and signs out, in chromium."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import Session

from models import Category
from tests.browser.conftest import Console, LiveApp, wait_for_mail
from tests.factories import make_approver, make_colleague
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.browser

SIGN_IN_LINK = re.compile(r"https?://\S+/signin/[A-Za-z0-9_\-]+\S*")


def test_sign_in_submit_and_sign_out(
    page: tuple[Page, Console],
    live_app: LiveApp,
    smtp: SmtpServer,
    session: Session,
    tmp_path: Path,
) -> None:
    browser, console = page
    colleague = make_colleague(session, "Sam Signin")
    make_approver(session, "Avery Approver", category=Category.energy)

    # Signed out, the dashboard sends you to sign in.
    browser.goto("/")
    expect(browser).to_have_url(re.compile(r"/signin\?next=/$"))
    expect(browser.get_by_role("heading", name="Sign in to Improve")).to_be_visible()

    browser.get_by_label("Your work email").fill(colleague.email.upper())
    browser.get_by_role("button", name="Email me a sign-in link").click()
    expect(browser.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(browser.get_by_role("status")).to_contain_text(colleague.email)

    # The link is followed exactly as the email gives it.
    mail = wait_for_mail(smtp, colleague.email)
    links = SIGN_IN_LINK.findall(mail.text)
    assert len(links) == 1, f"one sign-in link expected in:\n{mail.text}"
    assert links[0].startswith(f"{live_app.url}/signin/"), links[0]
    browser.goto(links[0])
    expect(browser.get_by_role("heading", name=f"Sign in as {colleague.name}")).to_be_visible()
    browser.get_by_role("button", name="Sign in", exact=True).click()

    # Signed in, on the dashboard.
    expect(browser).to_have_url(f"{live_app.url}/")
    nav = browser.get_by_role("navigation", name="Main")
    expect(nav).to_contain_text(colleague.name)
    expect(nav.get_by_role("button", name="Sign out")).to_be_visible()

    # Submit an idea.
    nav.get_by_role("link", name="Submit an idea").click()
    expect(browser).to_have_url(f"{live_app.url}/submit")
    title = "Turn off the lights in the post room at night"
    browser.get_by_label("Title").fill(title)
    browser.get_by_label("Description").fill("They stay on until the morning shift.")
    browser.get_by_label("Category").select_option(Category.energy.value)
    browser.get_by_label("Energy saved a year").fill("1,200")
    browser.get_by_label("Saving a year").fill("350")
    browser.get_by_role("button", name="Submit the idea").click()

    expect(browser).to_have_url(re.compile(rf"^{re.escape(live_app.url)}/improvements/\d+$"))
    expect(browser.get_by_role("heading", level=1)).to_have_text(title)
    improvement_path = browser.url.removeprefix(live_app.url)

    # The dashboard lists it among the recent improvements.
    nav.get_by_role("link", name="Dashboard").click()
    expect(browser).to_have_url(f"{live_app.url}/")
    recent = browser.get_by_role("region", name="Recent improvements")
    row = recent.get_by_role("row").filter(has_text=title)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(colleague.name)
    expect(row).to_contain_text("Submitted")
    expect(row.get_by_role("link")).to_have_attribute("href", improvement_path)
    browser.screenshot(path=tmp_path / "dashboard.png", full_page=True)

    # Signing out ends the session: the dashboard sends you to sign in again.
    nav.get_by_role("button", name="Sign out").click()
    expect(browser).to_have_url(f"{live_app.url}/signin?signed_out=true")
    expect(browser.get_by_role("status")).to_have_text("You are signed out.")
    browser.goto("/")
    expect(browser).to_have_url(re.compile(r"/signin\?next=/$"))

    assert console.problems() == [], "the pages logged problems:\n" + "\n".join(console.problems())
