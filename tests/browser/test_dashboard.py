"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): sign in, watch an alarm appear live
after a publish through the real broker, acknowledge it, see its state change, switch language. Screenshots of
each step go to test-artifacts/browser/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from facmon.cmd.service import Service
from facmon.facility.model import Role
from tests.conftest import Broker, example_config
from tests.http_server import serving
from tests.publishing import Gateway
from tests.waiting import eventually

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "browser"
PASSWORD = "operator password 1"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (`make system-deps` installs it)"
)


@pytest.fixture
def running(tmp_path: Path, mqtt_broker: Broker) -> Iterator[tuple[Service, str, Gateway]]:
    """The whole service against the real broker, served over HTTP, with an operator and some readings."""
    service = Service(example_config(tmp_path, mqtt_broker))
    service.accounts.add_user("li.na", PASSWORD, Role.OPERATOR, name="李娜 Li Na", at=datetime.now(UTC))
    service.start()
    gateway = Gateway(mqtt_broker)
    try:
        eventually(lambda: service.subscriber.connected, what="facmon's subscription")
        for pump, pressure in (("pump-1", 4.1), ("pump-2", 4.0)):
            gateway.publish("pump", pump, {"pressure_bar": pressure, "pump_running": True})
        with serving(service.app) as base:
            yield service, base, gateway
    finally:
        gateway.close()
        service.stop()


@pytest.fixture
def browser_page(running: tuple[Service, str, Gateway]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080}, locale="en-US")
            yield page
        finally:
            browser.close()


def test_sign_in_see_an_alarm_live_acknowledge_it_and_switch_language(running, browser_page) -> None:
    from playwright.sync_api import Page, expect

    service, base, gateway = running
    page: Page = browser_page  # type: ignore[assignment]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # What the content security policy blocks, the browser reports on the console: it would be missing from the page.
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )

    opened = page.goto(base)
    assert opened is not None and "script-src 'self'" in opened.headers["content-security-policy"]
    expect(page.locator("#signin")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "01-sign-in.png")
    page.fill("input[name=username]", "li.na")
    page.fill("input[name=password]", PASSWORD)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#who")).to_have_text("李娜 Li Na (operator)")
    expect(page.locator("#live")).to_have_class("live on")  # the event stream is open
    expect(page.locator("#mute")).to_have_text("Mute")  # the sign-in click allowed sound
    expect(page.locator(".tile")).to_have_count(len(service.registry))
    expect(page.locator('.tile[data-device="pump-1"]')).to_contain_text("4.10 bar")
    page.screenshot(path=ARTIFACTS / "02-overview.png")

    page.click('#tabs button[data-view="alarms"]')
    expect(page.locator("#alarms")).to_contain_text("none")
    # A fire alarm, published through the broker like a gateway would: it must appear without a reload.
    gateway.publish("smoke", "smoke-B-05", {"state": "alarm", "battery_pct": 90})
    row = page.locator("#alarms tr.active_unacked")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_contain_text("Smoke detector B10F lobby")
    expect(row.locator(".sev")).to_have_text("critical")
    page.screenshot(path=ARTIFACTS / "03-alarm-live.png")

    row.locator('button[data-act="ack"]').click()
    acked = page.locator("#alarms tr.active_acked")
    expect(acked).to_have_count(1)
    expect(acked).to_contain_text("acknowledged")
    [alarm] = service.state.list_alarms(states=None).items
    assert alarm.acked_by == "li.na"  # recorded as the signed-in user
    page.screenshot(path=ARTIFACTS / "04-acknowledged.png")

    page.click("#lang")
    expect(page.locator('#tabs button[data-view="alarms"]')).to_have_text("报警")
    expect(page.locator("#mute")).to_have_text("静音")
    expect(acked).to_contain_text("已确认")
    expect(acked.locator(".sev")).to_have_text("紧急")
    page.screenshot(path=ARTIFACTS / "05-chinese.png")

    page.click('#tabs button[data-view="work-orders"]')
    # The fire alarm's P1 (maintenance plans may have opened P4 rounds beside it).
    card = page.locator('.column[data-status="open"] .card', has_text="P1")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Smoke detector B10F lobby")
    expect(card.locator('button[data-to="in_progress"]')).to_have_count(0)  # an operator does not move them
    page.screenshot(path=ARTIFACTS / "06-work-orders.png")

    page.click('#tabs button[data-view="overview"]')
    page.click('.tile[data-device="pump-1"]')
    expect(page.locator("#device-title")).to_have_text("Booster pump 1", timeout=10_000)
    expect(page.locator("#charts .chart canvas").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "07-device.png")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.click("#back")
    page.screenshot(path=ARTIFACTS / "08-phone.png", full_page=True)
    assert errors == []
    assert refused == []
