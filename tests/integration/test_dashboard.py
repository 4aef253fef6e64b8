"""The dashboard in a real browser (headless Chromium) against a real farm with API keys: the key
prompt, declared agents and their GPU class, a job submitted from the page through to its playable
output, cancel, a refused submission's error rendered in the page, and the autoscaling panel (shown
only by a farm given GPU classes)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx
import pytest

from controller.farm import Farm, FarmConfig
from scheduler.demand import GpuClass, ScalingRules
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
# Half that batch fits an 80 GB H100 but neither card of the pool: only the gpu80 class can run it.
H100_ONLY = {"model_type": "flux", "prompt": "x", "resolution": "1920x1088", "batch_size": 8}
# The module's RTX 3060 node is of class gpu12; no node is of class gpu80. Agents idle an hour
# before release: none is let go while the test looks.
GPU_CLASSES = ScalingRules(
    (
        GpuClass("gpu12", "RTX 3060", max_gpus=2, ram_gb=32, idle_release_s=3600, hot_release_s=3600),
        GpuClass("gpu80", "H100 SXM", max_gpus=3, ram_gb=256, idle_release_s=3600, hot_release_s=3600),
    )
)


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
    nodes = [NodeSpec(("RTX 4090",), ram_gb=64), NodeSpec(("RTX 3060",), ram_gb=32, gpu_class="gpu12")]
    with (
        ray_cluster(nodes) as cluster,
        running_farm(folder / "data", cluster.address, agents=2, api_keys=keys) as running,
    ):
        yield running


@pytest.fixture
def page(browser: Browser, farm: Farm) -> Iterator[Page]:
    with _dashboard(browser, farm.url) as tab:
        yield tab


@pytest.fixture
def api(farm: Farm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=farm.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        yield client


def test_the_page_asks_for_a_key_keeps_it_and_shows_both_declared_agents(page: Page) -> None:
    from playwright.sync_api import expect

    agents = page.locator("#agents .card")
    expect(agents).to_have_count(2, timeout=10_000)
    # Each poll renders the agents and the autoscaling view together: this farm has no GPU classes.
    expect(page.locator("#autoscale-panel")).to_be_hidden()
    expect(page.locator('#agents .card:has-text("RTX 3060") .gpu-class')).to_have_text("gpu12")
    expect(page.locator('#agents .card:has-text("RTX 4090") .gpu-class')).to_have_count(0)
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


def test_a_farm_with_gpu_classes_shows_each_class_demand_against_its_agents(
    browser: Browser, farm: Farm, tmp_path: Path
) -> None:
    """A second controller over the module's cluster, given GPU classes: one Ray connection per
    process, and a cluster of its own would cost this slow module another minute. It shares the
    agents and runs nothing on them (its only job fits no card of the pool); stopped without
    killing them, it leaves the module's farm as it was."""
    from playwright.sync_api import expect

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key": KEY, "owner": "ops", "role": "admin"}]))
    config = FarmConfig(
        data_dir=tmp_path / "data",
        port=0,
        ray_address=farm.config.ray_address,
        api_keys=keys,
        scaling=GPU_CLASSES,
    )
    scaling = Farm(config).start()
    try:
        wait_until(lambda: len(scaling.agent_listing()) >= 2, 60, "the shared agents")
        with httpx.Client(
            base_url=scaling.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        ) as api:
            answer = api.post("/v1/jobs", json={"settings": H100_ONLY, "wait_for_capacity": True})
            assert answer.status_code == 201, answer.text
            wait_until(lambda: api.get("/v1/autoscale").json()["classes"][1]["waiting"] == 1, 30, "demand")
            served = api.get("/v1/autoscale").json()
        with _dashboard(browser, scaling.url) as page:
            panel = page.locator("#autoscale-panel")
            expect(panel).to_be_visible(timeout=10_000)
            small, big = page.locator('tr[data-class="gpu12"] td'), page.locator('tr[data-class="gpu80"] td')
            # class, GPU, agents busy / idle, jobs waiting, GPUs wanted / max
            expect(small).to_have_text(["gpu12", "RTX 3060", "0 / 1", "0", "0 / 2"])
            expect(big).to_have_text(["gpu80", "H100 SXM", "0 / 0", "1", "1 / 3"])
            expect(page.locator("#autoscale-rows tr")).to_have_count(2)
            expect(page.locator("#autoscale-released")).to_contain_text("0 agent(s) released")
        assert served["enabled"] and served["released"] == 0
        assert [(c["gpu_class"], c["idle"], c["waiting"], c["wanted"]) for c in served["classes"]] == [
            ("gpu12", 1, 0, 0),
            ("gpu80", 0, 1, 1),
        ]
    finally:
        scaling.stop()  # the agents and Ray's connection stay the module farm's


@contextmanager
def _dashboard(browser: Browser, url: str) -> Iterator[Page]:
    """A fresh browser profile on the dashboard, past the key prompt."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    tab.goto(url + "/")
    tab.locator("#key-form").wait_for(state="visible", timeout=10_000)
    tab.fill("#key-input", KEY)
    tab.click("#key-save")
    tab.locator("#key-form").wait_for(state="hidden")
    try:
        yield tab
    finally:
        context.close()


def _browser_problem() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does this as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[dev]'"
    return None
