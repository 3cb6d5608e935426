"""What the browser tests share: a page of the system Chromium with axe-core injected and its
script errors collected, following the navigation, signing in, and the check every page gets
(labelled controls, axe-core's WCAG 2 A/AA rules, no script error, a screenshot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"
WAIT_MS = 60_000
SCRIPT = "<script>window.pwned=1</script>"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _script_error(message: Any) -> bool:
    """A console error other than the browser noting a refusal the test asked for (a 4xx)."""
    refused = "the server responded with a status of 4"
    return bool(message.type == "error" and refused not in message.text)


def new_page(browser: Any, **options: Any) -> Any:
    context = browser.new_context(**options)
    context.add_init_script(path=str(AXE))  # through the debugger: not subject to the CSP
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of destructive buttons
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if _script_error(m) else None)
    page.js_errors = errors
    return page


def go(page: Any, title: str) -> None:
    """Follow the navigation's link."""
    page.get_by_role("navigation").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()


def sign_in(page: Any, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()


def check_page(page: Any, shots: Path, name: str) -> None:
    """Labelled controls, no axe violations, no script errors (a CSP refusal is one), and a
    screenshot."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
            .map(e => e.outerHTML)"""
    )
    assert unlabelled == [], name
    violations = page.evaluate(
        """async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']}))
            .violations.map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' '))"""
    )
    assert violations == [], name
    assert page.js_errors == [], name
    assert page.evaluate("window.pwned") is None, name
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
