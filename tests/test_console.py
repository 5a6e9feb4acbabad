"""The web console in a real headless browser, in every topology: Debian's Chromium, driven by
Playwright through ``executable_path`` (Playwright never downloads a browser here; ``make dev``
installs the chromium package).

It starts a run of ``examples/order_worker.py``'s ``order`` through the console's form and watches
its steps appear on the run's page while the page follows the run's event stream (no reload),
shows the API's errors next to the start form's fields, cancels a sleeping
``examples/approval_worker.py`` run and signals another, and looks at the runs, functions and
workers pages, and at a run on a phone's screen. With a tokens file (issue 13) it signs in
through the login form: a read token's pages have no actions and its posts are refused, a post
without the form's CSRF token is refused, and a write token's cancel works.

Screenshots: with ``TRINE_SCREENSHOTS=docs/images`` (a folder, relative to the repository), the
``all`` topology writes ``console-*.png`` there for docs/operations.md; otherwise they go to the
test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import ORDER, ROOT, Cluster

from trine_core import hash_token, new_token
from trine_gateway.ui.session import COOKIE

CHROMIUM = Path(os.environ.get("TRINE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""What Chromium needs on these machines: no sandbox as root, no GPU, and no connections of its
own (the network is closed; without these it keeps trying)."""
TIMEOUT_MS = 30_000
RUN_PATH = re.compile(r"/ui/runs/(?P<id>[0-9A-Z]{26})")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; a clear failure, never a skip, when it cannot run."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make dev` installs Debian's chromium (apt-get install "
            "chromium as root); this browser test needs it and does not skip"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make dev` installs requirements-dev.txt")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(cluster: Cluster, tmp_path: Path) -> Path:
    target = os.environ.get("TRINE_SCREENSHOTS")
    folder = ROOT / target if target and cluster.topology == "all" else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_api(cluster: Cluster, function: str, data: Any) -> str:
    with httpx.Client(base_url=cluster.url, timeout=10) as http:
        response = http.post("/v1/runs", json={"function": function, "input": data})
        assert response.status_code == 201, response.text
        run_id: str = response.json()["id"]
        return run_id


def console_error(message: Any, problems: list[str]) -> None:
    # A form shown again with its error answers the API's status (400, 404...), which Chromium
    # also logs as a failed load: what failed to load is checked by failed_asset instead.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(f"console: {message.text}")


def failed_asset(response: Any, problems: list[str]) -> None:
    if response.status >= 400 and response.request.resource_type != "document":
        problems.append(f"{response.status} for {response.url}")


def test_the_console_in_a_browser(cluster: Cluster, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    cluster.start()
    # Each step of `order` takes a second: long enough to see the run's steps arrive one by one.
    cluster.start_worker("order_worker.py", ORDER_STEP_DELAY_S="1")
    cluster.start_worker("approval_worker.py")
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=cluster.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: console_error(message, problems))
    page.on("response", lambda response: failed_asset(response, problems))

    def shot(name: str, on: Any = page) -> None:
        on.screenshot(path=str(shots / f"console-{name}.png"), full_page=True)

    # -- the start form shows the API's errors next to its fields ------------------------------
    page.goto("/ui/start")
    page.fill("#start-function", "order")
    page.fill("#start-input", '{"order_id": ')
    page.click("#start-form button[type=submit]")
    expect(page.locator("#start-input-error")).to_contain_text("malformed_json")
    expect(page.locator("#start-input")).to_have_value('{"order_id": ')  # kept to be fixed
    page.fill("#start-function", "no_such_function")
    page.fill("#start-input", "{}")
    page.click("#start-form button[type=submit]")
    expect(page.locator("#start-function-error")).to_contain_text(
        "unknown_function: no worker has registered function 'no_such_function'"
    )
    shot("start-error")

    # -- start `order` through the form and watch its steps arrive ------------------------------
    page.fill("#start-function", "order")
    page.fill("#start-input", json.dumps(ORDER, indent=2))
    page.click("#start-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/runs/[0-9A-Z]{26}\?notice=started"))
    match = RUN_PATH.search(page.url)
    assert match is not None
    order_id = match["id"]
    page.evaluate("window.trineNotReloaded = true")
    expect(page.locator("#live-state")).to_contain_text("live")
    expect(page.locator("#entry-0")).to_be_attached()
    # The first step is on the page while the last one has not run yet: it came live.
    assert page.locator("#entry-2").count() == 0
    expect(page.locator("#entry-1")).to_be_attached()
    shot("run-live")
    expect(page.locator("#entry-2")).to_have_attribute("data-state", "completed")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#live-state")).to_have_text("final")
    assert page.evaluate("window.trineNotReloaded") is True
    steps = page.locator("#timeline .entry").evaluate_all(
        "entries => entries.map(e => [e.dataset.name, e.dataset.state])"
    )
    assert steps == [["validate", "completed"], ["charge", "completed"], ["ship", "completed"]]
    expect(page.locator("#run-result")).to_contain_text('"tracking": "trk-o-1"')
    expect(page.locator("#actions")).to_be_hidden()
    shot("run")

    # -- cancel a sleeping approval run ---------------------------------------------------------
    sleeping = start_api(cluster, "approval", {"sleep_s": 3600})
    page.goto(f"/ui/runs/{sleeping}")
    expect(page.locator('.entry[data-kind="sleep"]')).to_have_attribute("data-state", "waiting")
    expect(page.locator("#run-status")).to_have_text("suspended")
    page.fill("#cancel-reason", "not needed any more")
    page.click("#cancel-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/ui/runs/{sleeping}\?notice=cancel"))
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator('.entry[data-name="close_ticket"]')).to_have_attribute(
        "data-state", "completed"
    )
    expect(page.locator('.entry[data-kind="sleep"]')).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#run-error")).to_contain_text("not needed any more")
    shot("cancel")

    # -- send a signal to another ---------------------------------------------------------------
    waiting = start_api(cluster, "approval", {"sleep_s": 0})
    page.goto(f"/ui/runs/{waiting}")
    signal = page.locator('.entry[data-kind="signal"]')
    expect(signal).to_have_attribute("data-state", "waiting")
    expect(signal).to_contain_text("for signal approve")
    page.fill("#signal-name", "approve")
    page.fill("#signal-payload", '{"by": "ada"}')
    page.click("#signal-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/ui/runs/{waiting}\?notice=delivered"))
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#run-result")).to_contain_text('"by": "ada"')
    expect(signal).to_have_attribute("data-state", "received")
    shot("signal")

    # -- the lists ------------------------------------------------------------------------------
    page.goto("/ui/runs")
    links = page.locator("table.runs a.mono").all_inner_texts()
    assert links == [waiting, sleeping, order_id]  # newest first
    shot("runs")
    page.goto("/ui/runs?status=cancelled")
    assert page.locator("table.runs a.mono").all_inner_texts() == [sleeping]
    page.goto("/ui/functions")
    expect(page.locator("#function-order")).to_contain_text("order")
    expect(page.locator("#function-approval")).to_be_attached()
    shot("functions")
    page.goto("/ui/workers")
    expect(page.locator("table.workers tr[data-worker]")).to_have_count(2)
    functions = page.locator("table.workers tr[data-worker] td:nth-child(2)").all_inner_texts()
    assert sorted(functions) == ["approval", "order"]
    shot("workers")

    # -- on a phone -----------------------------------------------------------------------------
    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        base_url=cluster.url,
    )
    small = phone.new_page()
    small.goto(f"/ui/runs/{order_id}")
    expect(small.locator("#run-status")).to_have_text("completed")
    overflow = small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the run page is {overflow}px wider than a phone's screen"
    small.screenshot(path=str(shots / "console-phone.png"))
    phone.close()
    context.close()
    assert problems == []


def write_tokens(path: Path, tokens: dict[str, tuple[str, list[str]]]) -> None:
    """A tokens file: ``name → (token, scopes)``."""
    path.write_text(
        "".join(
            f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(token)}"\n'
            f"scopes = {json.dumps(scopes)}\n\n"
            for name, (token, scopes) in tokens.items()
        )
    )


def sign_in(page: Any, token: str) -> None:
    page.fill("#login-token", token)
    page.click("#login-form button[type=submit]")


def test_the_console_signs_in_with_a_token(cluster: Cluster, browser: Any) -> None:
    """With a tokens file: the login form, a read token's pages without actions (a post is
    refused), a write token's cancel, and a post without the form's CSRF token refused."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    tokens = {
        "reader": (new_token(), ["read"]),
        "writer": (new_token(), ["read", "write"]),
        "workers": (new_token(), ["worker"]),
    }
    path = cluster.workdir / "tokens.toml"
    write_tokens(path, tokens)
    cluster.start(TRINE_AUTH_TOKENS_FILE=str(path))
    cluster.start_worker("approval_worker.py", TRINE_TOKEN=tokens["workers"][0])
    writer = {"authorization": f"Bearer {tokens['writer'][0]}"}
    with httpx.Client(base_url=cluster.url, timeout=10, headers=writer) as http:
        response = http.post("/v1/runs", json={"function": "approval", "input": {"sleep_s": 3600}})
        assert response.status_code == 201, response.text
        sleeping: str = response.json()["id"]
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=cluster.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    # -- without a session: the login form, which refuses a wrong token ------------------------
    page.goto(f"/ui/runs/{sleeping}")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    expect(page.locator("#login-form")).to_be_visible()
    sign_in(page, "trine_not-a-token")
    expect(page.locator("#login-error")).to_contain_text("not a valid API token")

    # -- a read token: pages, no actions, and a post is refused --------------------------------
    sign_in(page, tokens["reader"][0])
    page.wait_for_url(re.compile(r"/ui/runs"))
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    page.goto(f"/ui/runs/{sleeping}")
    expect(page.locator("#run-status")).to_have_text("suspended")
    expect(page.locator("#live-state")).to_contain_text("live")  # its event stream, by cookie
    expect(page.locator("#signed-in-as")).to_contain_text("reader · read-only")
    expect(page.locator("#read-only")).to_be_visible()
    assert page.locator("#cancel-form").count() == 0
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script reads it
    csrf = page.locator("#signout-form input[name=csrf]").get_attribute("value")
    status = page.evaluate(
        """([url, csrf]) => fetch(url, {method: "POST", body: new URLSearchParams({csrf})})
                .then(r => r.status)""",
        [f"/ui/runs/{sleeping}/cancel", csrf],
    )
    assert status == 403
    page.click("#signout-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/login"))
    assert not [c for c in context.cookies() if c["name"] == COOKIE]

    # -- a write token: a post without the form's CSRF token is refused; the form cancels ------
    page.goto(f"/ui/login?next=/ui/runs/{sleeping}")
    sign_in(page, tokens["writer"][0])
    page.wait_for_url(re.compile(rf"/ui/runs/{sleeping}$"))
    forged = page.request.post(f"/ui/runs/{sleeping}/cancel", form={"reason": "forged"})
    assert forged.status == 403
    assert "CSRF" in forged.text()
    expect(page.locator("#run-status")).to_have_text("suspended")
    page.fill("#cancel-reason", "not needed any more")
    page.click("#cancel-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/ui/runs/{sleeping}\?notice=cancel"))
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#run-error")).to_contain_text("not needed any more")
    context.close()
    assert problems == []
