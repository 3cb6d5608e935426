"""Real Chromium (the system's; Playwright's own download is not used) against one real
``gpuyard up`` for the package: one server, one browser, the operator's and an org user's
pages, shared by every module here (they run in one xdist group, one after the other).

Without Chromium or Playwright the browser tests skip and say why, unless
``GPUYARD_TEST_REQUIRE_BROWSER=1`` (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.kit import expect, new_page, sign_in
from tests.cli.up_kit import Launcher, Server, wait_for_hosts

_skip_reason: str | None = None


def _chromium() -> str:
    """The system Chromium's path, or skip (fail where a browser is required)."""
    global _skip_reason
    problem = None
    found = os.environ.get("GPUYARD_TEST_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright for Python is not installed (pip install -e '.[dev]')"
    if found is None:
        problem = "no chromium on PATH (apt-get install chromium)"
    if problem:
        if os.environ.get("GPUYARD_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (GPUYARD_TEST_REQUIRE_BROWSER=1) but: {problem}")
        _skip_reason = problem
        pytest.skip(f"BROWSER TESTS SKIPPED: {problem}")
    assert found is not None
    return found


@pytest.fixture(scope="package")
def chromium_path() -> str:
    return _chromium()


@pytest.fixture(scope="package")
def up(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``gpuyard up`` with six fake RTX 4090s, a one-second heartbeat and metering, and
    webhooks allowed to loopback (the test's endpoint is the server's own address)."""
    launcher = Launcher(tmp_path_factory.mktemp("up"))
    try:
        env = {
            "GPUYARD_HEARTBEAT_SECONDS": "1",
            "GPUYARD_METER_SETTLE_SECONDS": "1",
            "GPUYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
        }
        server = launcher("--gpus", "RTX 4090:6", env=env)
        server.wait_ready()
        (key,) = server.printed_keys()
        wait_for_hosts(server, key, 1)
        yield server
    finally:
        launcher.kill_all()


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium_path,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="package")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the run keeps a screenshot of every page (under pytest's tmp dir, not committed)."""
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture(scope="package")
def operator(browser: Any, up: Server) -> Iterator[Any]:
    page = new_page(browser)
    page.goto(f"{up.base_url}/console/sign-in")
    page.get_by_label("API key").fill("vl_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That key was refused: invalid API key")
    sign_in(page, up.base_url, up.printed_keys()[0])
    yield page
    page.context.close()


@pytest.fixture(scope="package")
def customer(browser: Any, up: Server, operator: Any) -> Iterator[Any]:
    """An org's user, whose org and first key the operator made on the Organizations page."""
    operator.goto(f"{up.base_url}/console/orgs")
    operator.get_by_label("Name").fill("Acme")
    operator.get_by_role("button", name="Create organization").click()
    row = operator.get_by_role("row").filter(has_text="Acme")
    row.get_by_role("button", name="Issue a key").click()
    key = operator.locator("#org-key").input_value()
    page = new_page(browser)
    sign_in(page, up.base_url, key)
    page.api_key = key  # for the tests' own setup calls to the API
    yield page
    page.context.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skip_reason:
        terminalreporter.write_sep("!", "CONSOLE BROWSER TESTS SKIPPED", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{_skip_reason}. Set GPUYARD_TEST_REQUIRE_BROWSER=1 to make this a failure."
        )
