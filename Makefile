# forgetlab front door. `make help` lists the targets.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Two installs: what a study needs (`make study`, `report`, `ui`), and that plus the test and
# benchmark tools (torch among them, ~2 GB) for `make test`. The second builds on the first, so a
# venv made for tests also serves studies, and a study's venv gains only the extras.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
EXPERIMENT ?= quickstart
SERVER_PORT ?= 5001
SERVER_WORKERS ?= 2
UI_PORT ?= 5000

.DEFAULT_GOAL := help
.PHONY: help venv study report pilot study-credit-assignment test test-fast ui screenshots server server-stop system-deps clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(DEV_STAMP)

venv: $(DEV_STAMP) ## create .venv and install forgetlab with its dev and benchmark tools (torch, CPU)

# The report is written even when some jobs failed (it lists them); the exit code stays the sweep's.
# Exit code 2 is a bad config: nothing was trained, so there is nothing new to report.
study: $(STAMP) ## run the quickstart study on the local sqlite store, write its report, print the summary
	$(PY) experiments/train.py -m experiment=$(EXPERIMENT); trained=$$?; \
	if [ $$trained -eq 2 ]; then exit 2; fi; \
	$(PY) analysis/report.py --experiment $(EXPERIMENT) || exit $$?; \
	echo; echo "Browse the runs:  make ui   (it prints the address to open)"; \
	exit $$trained

# A declared study's verdict comes first: it is what a study is for, and the general report of a study of
# thousands of runs takes minutes to read them (its figures are left out beyond --max-panels panels).
report: $(STAMP) ## write the verdict of a declared study, then reports/<name>/ for an experiment: make report EXPERIMENT=name
	$(PY) analysis/study_report.py --experiment $(EXPERIMENT) --if-declared
	$(PY) analysis/report.py --experiment $(EXPERIMENT)

# The pilot gates the credit-assignment study (docs/credit_assignment_pilot.md); exit code 3 from pilot.py
# says that some learner is below the gate, which is a result, not a failure.
pilot: $(STAMP) ## the credit-assignment pilot: its sweep (validation sets), the rates it selects, the learnability table and gate
	$(PY) experiments/train.py -m experiment=credit_assignment_pilot
	$(PY) analysis/select_lr.py --experiment credit_assignment_pilot --criterion joint_acc --table conf/learner/credit_assignment/lr.csv
	$(PY) analysis/pilot.py --experiment credit_assignment_pilot --doc docs/credit_assignment_pilot.md; \
	code=$$?; [ $$code -eq 0 ] || [ $$code -eq 3 ]

study-credit-assignment: $(STAMP) ## the whole credit-assignment study, resumable: budget, pilot, selection, gate, study, report, docs
	$(PY) analysis/run_study.py credit_assignment

test: $(DEV_STAMP) system-deps ## check the import layering, then run the whole test suite (slow end-to-end tests included)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --maxschedchunk 1 -q --durations=25 --durations-min=5

test-fast: $(DEV_STAMP) ## the import layering and the fast subset, for local iteration
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --maxschedchunk 1 -q -m "not slow"

# The store is created (or checked) under forgetlab's lock first: `mlflow ui` would otherwise create its
# schema while a training run does the same (forgetlab.server stands alone, so the Makefile does it).
ui: $(STAMP) ## the MLflow UI on the local store at http://127.0.0.1:5000 (UI_PORT=...), one worker, training view
	@$(PY) -m forgetlab.tracking.store prepare sqlite:///$(CURDIR)/mlflow.db
	@FORGETLAB_ROOT=$(CURDIR) $(PY) -m forgetlab.server ui --port $(UI_PORT)

screenshots: $(DEV_STAMP) system-deps ## run the browser test on a fresh small study and save its screenshots to docs/ui/
	FORGETLAB_TEST_ARTIFACTS=$(CURDIR)/docs/ui $(PY) -m pytest -q tests/test_ui.py

system-deps: ## install PostgreSQL and Chromium from the OS packages when missing (for server and UI tests)
	@.ci/system-deps

server: $(DEV_STAMP) system-deps ## start MLflow on PostgreSQL at http://127.0.0.1:5001 (SERVER_PORT=...) for `tracking=server`
	@FORGETLAB_ROOT=$(CURDIR) $(PY) -m forgetlab.server start --port $(SERVER_PORT) --workers $(SERVER_WORKERS)

server-stop: $(DEV_STAMP) ## stop the server started by `make server` (its data stays in .forgetlab/server)
	@FORGETLAB_ROOT=$(CURDIR) $(PY) -m forgetlab.server stop

clean: ## remove outputs of runs (keeps mlflow.db and .venv)
	rm -rf outputs multirun reports
