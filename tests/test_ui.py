"""The MLflow UI in a real browser, as `make ui` serves it: headless Chromium (the OS package, driven
by Playwright) on a fresh small study and its report. The experiment opens in the training view, in
its run table made for comparing (the final metrics and what tells runs apart as columns), the jobs
nested under the sweep's parent with readable names; the chart view draws the final metrics as bars;
the parent shows the swept params, the sweep's counts and its results table, and a run's artifacts hold
its figures. `make ui` prints no warning of MLflow's. Only 127.0.0.1 is ever contacted.

The screenshots go to ``$FORGETLAB_TEST_ARTIFACTS`` (default test-artifacts/); `make screenshots`
points it at docs/ui/, where the README shows them."""

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from forgetlab.server import LOOPBACK, TRAINING_VIEW_QUERY, free_port, stop_process_group, ui_url, wait_healthy
from tests.conftest import ROOT, run_train

CHROMIUM = Path(os.environ.get("FORGETLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACT_DIR = Path(os.environ.get("FORGETLAB_TEST_ARTIFACTS", ROOT / "test-artifacts"))
FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]
EXPERIMENT = "ui_study"


def save_screenshot(page, name: str) -> Path:
    """A screenshot as a 256-colour PNG: UI pages have few colours, so it stays small for docs/."""
    from PIL import Image

    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACT_DIR / name
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def close_assistant_panel(page) -> None:
    """MLflow 3.17 opens its assistant beside every page; closed, the table gets the width."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def fits(locator) -> bool:
    """The element's text is shown whole (not cut off with an ellipsis)."""
    return locator.evaluate("e => e.scrollWidth <= e.clientWidth + 1")


@pytest.fixture
def study(tmp_path):
    """A small sweep (2 jobs), its report, and `python -m forgetlab.server ui` serving the store."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    trained = run_train(
        "-m", "seed=0,1", *FAST, f"tracking.uri={store}", f"tracking.experiment={EXPERIMENT}",
        f"tracking.artifact_location={tmp_path}/artifacts", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    reported = subprocess.run(
        [sys.executable, str(ROOT / "analysis" / "report.py"), "--experiment", EXPERIMENT, "--tracking-uri", store,
         "--out", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert reported.returncode == 0, reported.stderr[-3000:]
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        ui = subprocess.Popen(
            [sys.executable, "-m", "forgetlab.server", "ui", "--port", str(port), "--store", store],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
            env={**os.environ, "FORGETLAB_ROOT": str(tmp_path)},
        )
    try:
        origin = f"http://{LOOPBACK}:{port}"
        wait_healthy(origin, ui.pid, log)
        yield store, origin, log
    finally:
        stop_process_group(ui.pid)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `make system-deps` installs it")
def test_a_fresh_study_opens_in_the_training_view_with_readable_runs_params_metrics_and_figures(study):
    from playwright.sync_api import sync_playwright

    store, origin, log = study
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["forgetlab.kind"] == "sweep"]
    jobs = sorted((r for r in runs if r.data.tags["forgetlab.kind"] == "train"), key=lambda r: r.info.run_name)
    assert [j.info.run_name for j in jobs] == ["backprop·class·s0·split_digits", "backprop·class·s1·split_digits"]
    assert experiment.tags["mlflow.sharedViewState.forgetlab"]  # the run table's view for comparing
    assert len(runs) == 3  # the report run lives in an experiment of its own
    elsewhere: list[str] = []

    def local_only(route):
        if urllib.parse.urlsplit(route.request.url).netloc == urllib.parse.urlsplit(origin).netloc:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.route("**/*", local_only)

            # The experiment: the training view's run table made for comparing, the jobs nested under the parent.
            page.goto(ui_url(origin, experiment.experiment_id))
            parent_cell = page.get_by_text(parent.info.run_name, exact=True)
            parent_cell.wait_for(timeout=90_000)
            assert TRAINING_VIEW_QUERY in page.url and f"/experiments/{experiment.experiment_id}/runs" in page.url
            body = page.inner_text("body")
            assert "Run Name" in body and "Judges" not in body and "Sessions" not in body  # not the GenAI view
            assert "shared view" in body  # the experiment's view for comparing ...
            for column in ("final/acc", "final/bwt", "final/forgetting", "seed"):  # (the grid draws only the columns in view)
                assert column in body, column  # ... with what tells runs apart and their final metrics
            close_assistant_panel(page)
            assert page.get_by_text(jobs[0].info.run_name, exact=True).count() == 0  # collapsed under the parent
            page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
            job_cells = [page.get_by_text(j.info.run_name, exact=True) for j in jobs]
            for cell in job_cells:
                cell.wait_for(timeout=30_000)
            top = parent_cell.bounding_box()
            for cell in job_cells:
                box = cell.bounding_box()
                assert box["y"] > top["y"] and box["x"] > top["x"]  # below the parent, indented
            assert "3 matching runs" in page.inner_text("body")
            # Nested names need a wider column than MLflow's default 190 px; a user drags its edge
            # once (the left half of the handle: the next header covers the right half).
            edge = page.locator('[col-id="attributes.`Run Name`"] .ag-header-cell-resize').bounding_box()
            page.mouse.move(edge["x"] + 2, edge["y"] + edge["height"] / 2)
            page.mouse.down()
            page.mouse.move(edge["x"] + 162, edge["y"] + edge["height"] / 2, steps=10)
            page.mouse.up()
            for cell in job_cells:
                assert fits(cell), (cell.inner_text(), cell.evaluate("e => [e.scrollWidth, e.clientWidth]"))
            save_screenshot(page, "mlflow_ui_runs.png")

            # The chart view: the final metrics as bars, one per run.
            page.locator('input[value="CHART"]').dispatch_event("click")
            page.get_by_placeholder("Search metric charts").fill("final/")
            page.locator(".barlayer .point").nth(len(jobs) - 1).wait_for(timeout=60_000)
            assert "final/acc" in page.inner_text("body") and page.locator(".js-plotly-plot").count() >= 4
            save_screenshot(page, "mlflow_ui_charts.png")

            # The parent run: swept params, summary metrics, the results table.
            page.goto(ui_url(origin, experiment.experiment_id, parent.info.run_id))
            page.get_by_text("sweep/jobs_finished", exact=True).wait_for(timeout=60_000)
            close_assistant_panel(page)
            body = page.inner_text("body")
            assert "seed\n0, 1" in body.replace("\t", "\n")
            for name in ("sweep/jobs", "sweep/jobs_failed", "sweep/jobs_skipped", "sweep/jobs_trained"):
                assert name in body
            assert "mean_final" not in body
            save_screenshot(page, "mlflow_ui_sweep_parent.png")

            # A training run's artifacts: its task accuracy figure, shown as an image.
            page.goto(ui_url(origin, experiment.experiment_id, jobs[0].info.run_id))
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("figures", exact=True).first.click()
            page.get_by_text("task_accuracy.png", exact=True).first.click()
            page.wait_for_function("Array.from(document.images).some(i => i.src.startsWith('blob:') && i.naturalWidth > 300)",
                                   timeout=30_000)
            close_assistant_panel(page)
            save_screenshot(page, "mlflow_ui_run_figure.png")
        finally:
            browser.close()
    assert elsewhere == [], f"the page tried to reach beyond 127.0.0.1: {elsewhere[:5]}"
    for name in ("mlflow_ui_runs.png", "mlflow_ui_charts.png", "mlflow_ui_sweep_parent.png", "mlflow_ui_run_figure.png"):
        assert 10_000 < (ARTIFACT_DIR / name).stat().st_size < 400_000
    assert "sweep_results.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    served = log.read_text()  # `make ui`'s output: no warning of MLflow's or its libraries'
    assert "Registry store URI not provided" not in served and "Deprecat" not in served
    # The report of this sweep put its figures on the parent run.
    assert any(a.path.endswith(".png") for a in client.list_artifacts(parent.info.run_id, "report"))
