"""The MLflow UI in a real browser: headless Chromium (the OS package, driven by Playwright) shows a
sweep's parent run and, expanded, its jobs nested under it. Only 127.0.0.1 is ever contacted."""

import os
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from forgetlab.server import LOOPBACK, free_port, start_mlflow, stop_process_group
from tests.conftest import ROOT, run_train

CHROMIUM = Path(os.environ.get("FORGETLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACT_DIR = Path(os.environ.get("FORGETLAB_TEST_ARTIFACTS", ROOT / "test-artifacts"))
FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `make system-deps` installs it")
def test_experiment_page_lists_the_sweep_parent_with_its_jobs_nested(tmp_path):
    from playwright.sync_api import sync_playwright

    store = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_train(
        "-m", "seed=0,1", *FAST, f"tracking.uri={store}", "tracking.experiment=ui_sweep",
        f"tracking.artifact_location={tmp_path}/artifacts", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("ui_sweep").experiment_id
    runs = client.search_runs([experiment_id])
    parent = next(r for r in runs if r.data.tags["forgetlab.kind"] == "sweep")
    jobs = sorted(r.info.run_name for r in runs if r.data.tags["forgetlab.kind"] == "train")
    assert len(jobs) == 2

    port = free_port()
    pid = start_mlflow(store, tmp_path / "served", tmp_path / "mlflow.log", port=port, workers=1)
    origin = f"http://{LOOPBACK}:{port}"
    elsewhere: list[str] = []

    def local_only(route):
        if urllib.parse.urlsplit(route.request.url).netloc == f"{LOOPBACK}:{port}":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 900})
                page.route("**/*", local_only)
                page.goto(f"{origin}/#/experiments/{experiment_id}/runs")
                parent_cell = page.get_by_text(parent.info.run_name, exact=True)
                parent_cell.wait_for(timeout=90_000)
                # Jobs are grouped under their parent: hidden until the parent row is expanded.
                assert page.get_by_text(jobs[0], exact=True).count() == 0
                page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
                job_cells = [page.get_by_text(name, exact=True) for name in jobs]
                for cell in job_cells:
                    cell.wait_for(timeout=30_000)
                ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACT_DIR / "mlflow_ui_sweep.png"))
                top = parent_cell.bounding_box()
                for cell in job_cells:
                    box = cell.bounding_box()
                    assert box["y"] > top["y"] and box["x"] > top["x"]  # below the parent, indented
                assert "3 matching runs" in page.inner_text("body")
            finally:
                browser.close()
    finally:
        stop_process_group(pid)
    assert elsewhere == [], f"the page tried to reach beyond 127.0.0.1: {elsewhere[:5]}"
    assert (ARTIFACT_DIR / "mlflow_ui_sweep.png").stat().st_size > 10_000
