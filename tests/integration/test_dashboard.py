"""The dashboard in a real browser (headless Chromium) against a real farm with API keys: the key
prompt, declared agents, a job submitted from the page through to its playable output, cancel, and
a refused submission's error rendered in the page."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx
import pytest

from controller.farm import Farm
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
KEY = "dash-admin-key"
TINY_JOB = {"model_type": "wan-tiny", "video_length": 9, "seed": 3}
# Sixteen FLUX.1-dev images of 1920x1088 at once need ~128 GiB of VRAM: no agent of this pool can
# ever run it (WanGP renders its video models one video a call, so a batch is an image model's).
IMPOSSIBLE = {"model_type": "flux", "prompt": "x", "resolution": "1920x1088", "batch_size": 16}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    problem = _browser_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the browser tests to run: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    folder = tmp_path_factory.mktemp("dashboard-farm")
    keys = folder / "keys.json"
    keys.write_text(json.dumps([{"key": KEY, "owner": "ops", "role": "admin"}]))
    nodes = [NodeSpec(("RTX 4090",), ram_gb=64), NodeSpec(("RTX 3060",), ram_gb=32)]
    with (
        ray_cluster(nodes) as cluster,
        running_farm(folder / "data", cluster.address, agents=2, api_keys=keys) as running,
    ):
        yield running


@pytest.fixture
def page(browser: Browser, farm: Farm) -> Iterator[Page]:
    """A fresh browser profile on the dashboard, past the key prompt."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    tab.goto(farm.url + "/")
    tab.locator("#key-form").wait_for(state="visible", timeout=10_000)
    tab.fill("#key-input", KEY)
    tab.click("#key-save")
    tab.locator("#key-form").wait_for(state="hidden")
    yield tab
    context.close()


@pytest.fixture
def api(farm: Farm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=farm.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        yield client


def test_the_page_asks_for_a_key_keeps_it_and_shows_both_declared_agents(page: Page) -> None:
    from playwright.sync_api import expect

    agents = page.locator("#agents .card")
    expect(agents).to_have_count(2, timeout=10_000)
    expect(page.locator("#agents")).to_contain_text("RTX 4090")
    expect(page.locator("#agents")).to_contain_text("RTX 3060")
    expect(page.locator("#agents .badge.declared")).to_have_count(2)
    expect(page.locator("#agents")).to_contain_text("24.0 GiB")
    page.reload()  # the key was kept: no prompt the second time
    expect(agents).to_have_count(2, timeout=10_000)
    expect(page.locator("#key-form")).to_be_hidden()


def test_a_job_submitted_from_the_page_succeeds_and_its_preview_is_served(
    page: Page, farm: Farm, api: httpx.Client
) -> None:
    from playwright.sync_api import expect

    page.fill("#settings", json.dumps(TINY_JOB))
    page.click("#submit-settings")
    expect(page.locator("#submit-result")).to_contain_text("Submitted 1 job(s)")
    job_id = page.locator("#submit-result").inner_text().split(": ", 1)[1].rstrip(".")
    row = page.locator(f'#finished-rows tr[data-id="{job_id}"]')
    expect(row).to_have_attribute("data-state", "succeeded", timeout=120_000)
    preview = row.locator(".preview video, .preview img")
    expect(preview).to_have_count(1)
    src = preview.get_attribute("src") or ""
    media = httpx.get(urljoin(farm.url, src), timeout=30)  # no header: ?key= alone must do
    assert media.status_code == 200 and len(media.content) > 0
    link = row.locator("a.output").first.get_attribute("href") or ""
    assert httpx.get(urljoin(farm.url, link), timeout=30).content == media.content
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1500)  # let the preview's first frame paint
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_a_queued_job_is_canceled_from_the_page(page: Page, api: httpx.Client) -> None:
    from playwright.sync_api import expect

    answer = api.post("/v1/jobs", json={"settings": IMPOSSIBLE, "wait_for_capacity": True})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobs"][0]["id"]
    row = page.locator(f'#active-rows tr[data-id="{job_id}"]')
    expect(row).to_have_attribute("data-state", "queued", timeout=5_000)
    expect(row.locator(".wait")).not_to_be_empty(timeout=5_000)  # why it waits is shown
    row.locator("button.cancel").click()
    expect(row).to_have_count(0, timeout=5_000)
    finished = page.locator(f'#finished-rows tr[data-id="{job_id}"]')
    expect(finished).to_have_attribute("data-state", "canceled", timeout=5_000)
    wait_until(lambda: api.get(f"/v1/jobs/{job_id}").json()["state"] == "canceled", 10, "the cancel")


def test_a_refused_submission_shows_the_servers_error_in_the_page(page: Page) -> None:
    from playwright.sync_api import expect

    page.fill("#settings", json.dumps({"model_type": "no-such-model", "prompt": "x"}))
    page.click("#submit-settings")
    errors = page.locator("#errors")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text("422: invalid settings")
    expect(errors).to_contain_text("no-such-model")


def _browser_problem() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does this as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[dev]'"
    return None
