"""End to end in a real browser: a proposal email's link opens mentornet's answer page in
headless Chromium (Debian's, driven by Playwright; JavaScript off, phone-sized), the mentee
accepts, then the mentor, and the introduction email arrives. Once in English, once in French.

Everything is real: the three services as processes, Kafka, PostgreSQL, the test's own SMTP
server that receives the emails, and the browser. Screenshots of each page are kept in
.artifacts/browser/ (the test's artefacts; docs/images/ shows copies).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from services.registry import NAMES
from shared.local.infra import Endpoints
from shared.local.sinks import SmtpSink
from shared.local.stack import REPO_ROOT
from tests.support import Services, cloud_event, free_port, publish_raw, unique

pytestmark = pytest.mark.e2e

TENANT = unique("browser")
ARTIFACTS = REPO_ROOT / ".artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: .ci/run installs it
# As root in a closed network: no sandbox, and none of Chromium's own calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What the page must be for everyone, read in the browser (the page's own scripts are off; this
# is the test's): the reader's language, one h1, a phone's viewport and no sideways scrolling,
# every field labelled, radio groups in a fieldset with a legend, no script, and text at WCAG
# AA contrast (4.5:1) against the background it is drawn on.
ACCESSIBILITY = """() => {
  const problems = [];
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const rgba = (css) => (css.match(/[\\d.]+/g) || []).map(Number);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  if (!document.documentElement.lang) problems.push("no lang");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not one h1");
  if (!document.querySelector('meta[name=viewport]')) problems.push("no viewport");
  if (document.querySelectorAll("script").length) problems.push("a script");
  if (document.documentElement.scrollWidth > window.innerWidth) problems.push("scrolls sideways");
  for (const f of document.querySelectorAll("input:not([type=hidden]), textarea, select")) {
    if (!f.labels || !f.labels.length) problems.push("unlabelled " + (f.name || f.id));
    if (f.type === "radio" && !f.closest("fieldset")?.querySelector("legend")) problems.push("radio outside a fieldset: " + f.name);
  }
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("head")) continue;
    const fg = lum(rgba(getComputedStyle(el).color).slice(0, 3)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} of <${el.tagName.toLowerCase()}> "${el.textContent.trim().slice(0, 30)}"`);
  }
  return problems;
}"""
LINK = re.compile(r"https?://[^\s<>\"]+/answer\?[^\s<>\"]+")


@pytest.fixture(scope="module")
async def base_url(service_env: dict[str, str], smtp: SmtpSink) -> AsyncIterator[str]:
    """The three services, notifications reachable at the address its links name."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**service_env, **smtp.env(), "DELIVERY_TENANTS": json.dumps([TENANT])}
    services = Services()
    for name in NAMES:
        extra = {"PUBLIC_BASE_URL": url} if name == "notifications" else {}
        proc = services.add(name, name, {**env, **extra})
        if name == "notifications":
            proc.port = port
    async with services:
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert await asyncio.to_thread(CHROMIUM.exists), (
        f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    )
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


def _person(person_id: str, program: str, name: str, language: str, **extra: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "program_id": program,
        "display_name": name,
        "email": f"{person_id}@{TENANT}.example",
        "languages": [language],
        "timezone": "Europe/Paris",
        "seniority": 8 if "expertise" in extra else 3,
        **extra,
    }


async def _register(bootstrap: str, mentor: dict[str, Any], mentee: dict[str, Any]) -> None:
    records = []
    for topic, person in (("mentor-registered", mentor), ("mentee-registered", mentee)):
        event = cloud_event(topic, TENANT, person, source="hr/browser-test")
        records.append((topic, person["person_id"].encode(), json.dumps(event).encode()))
    await publish_raw(bootstrap, records)


async def _mail(smtp: SmtpSink, address: str, kind: str, timeout: float = 90) -> EmailMessage:
    """The one email of this kind (mentornet's X-Mentornet-Kind header) sent to `address`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [message_from_bytes(m.content, policy=policy.default) for m in smtp.to(address)]
        found = [m for m in found if m["X-Mentornet-Kind"] == kind]
        if found:
            assert len(found) == 1, f"{len(found)} {kind} emails to {address}"
            return found[0]
        assert time.monotonic() < deadline, f"no {kind} email to {address}"
        await asyncio.sleep(0.2)


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _accept_link(message: EmailMessage) -> str:
    links = LINK.findall(_text(message))
    accept = [link for link in links if "choice=accept" in link]
    assert accept, f"no accept link in: {links}"
    return accept[0]


async def _accept(browser: Browser, link: str, shot: str) -> tuple[str, str, str]:
    """Open the link as a phone without JavaScript, keep a screenshot, press Accept; returns
    the page's language, its text before, and the text after answering."""
    context = await browser.new_context(
        java_script_enabled=False, viewport={"width": 390, "height": 844}
    )
    page: Page = await context.new_page()
    try:
        response = await page.goto(link)
        assert response is not None and response.status == 200, await page.content()
        lang = await page.get_attribute("html", "lang") or ""
        before = await page.inner_text("body")
        assert await page.evaluate(ACCESSIBILITY) == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        async with page.expect_navigation():
            await page.click("button[name=choice][value=accept]")
        after = await page.inner_text("body")
        assert await page.evaluate(ACCESSIBILITY) == []
        await page.screenshot(path=str(ARTIFACTS / f"{shot}-answered.png"), full_page=True)
        return lang, before, after
    finally:
        await context.close()


@pytest.mark.parametrize(
    ("language", "mentor_name", "mentee_name", "topic", "accepted", "already", "too", "introduced"),
    [
        (
            "en",
            "Grace Hopper",
            "Alan Turing",
            "compilers",
            "accepted",
            "has already accepted",
            "has accepted too",
            "Meet",
        ),
        (
            "fr",
            "Marie Curie",
            "Nicolas Martin",
            "négociation",
            "accept",
            "a déjà accepté",
            "a déjà accepté",
            "Voici",
        ),
    ],
)
async def test_both_accept_in_a_browser_and_are_introduced(
    infra: Endpoints,
    smtp: SmtpSink,
    base_url: str,
    browser: Browser,
    language: str,
    mentor_name: str,
    mentee_name: str,
    topic: str,
    accepted: str,
    already: str,
    too: str,
    introduced: str,
) -> None:
    program = f"program-{language}"
    mentor = _person(
        f"mentor-{language}",
        program,
        mentor_name,
        language,
        expertise=[{"topic": topic, "level": 5}],
        capacity=1,
    )
    mentee = _person(
        f"mentee-{language}",
        program,
        mentee_name,
        language,
        goals=[{"topic": topic, "priority": 1}],
    )
    await _register(infra.bootstrap_servers, mentor, mentee)

    to_mentee = await _mail(smtp, mentee["email"], "match-proposal")
    to_mentor = await _mail(smtp, mentor["email"], "match-proposal")
    assert mentor_name in str(to_mentee["Subject"]) + _text(to_mentee)
    assert mentee_name in str(to_mentor["Subject"]) + _text(to_mentor)
    mentee_link, mentor_link = _accept_link(to_mentee), _accept_link(to_mentor)
    assert mentee_link.startswith(base_url) and mentor_link.startswith(base_url)

    lang, page, answered = await _accept(browser, mentee_link, f"{language}-mentee-proposal")
    assert lang == language
    assert mentor_name in page and topic in page  # who it is, and what they know
    assert mentor["email"] not in page  # addresses stay hidden until both accept
    assert accepted in answered.lower()

    lang, page, answered = await _accept(browser, mentor_link, f"{language}-mentor-proposal")
    assert lang == language and mentee_name in page and topic in page
    assert f"{mentee_name} {already}" in page  # the mentee's answer, read from their event
    assert accepted in answered.lower() and too in answered

    # both accepted: matching confirms, and each is introduced to the other
    to_mentee = await _mail(smtp, mentee["email"], "match-introduction")
    to_mentor = await _mail(smtp, mentor["email"], "match-introduction")
    assert introduced in str(to_mentee["Subject"]) and mentor_name in str(to_mentee["Subject"])
    assert mentor["email"] in _text(to_mentee) and mentee["email"] in _text(to_mentor)

    # the link has done its work: opened again, it says so and offers nothing to press
    context = await browser.new_context(java_script_enabled=False)
    again = await context.new_page()
    response = await again.goto(mentee_link)
    assert response is not None and response.status == 200
    assert await again.locator("button[name=choice]").count() == 0
    await context.close()
