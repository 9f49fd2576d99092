"""Run a declared study from start to doc in one command, resumably: its budget first, then the pilot and
selection sweep, the rates it selects, the learnability gate, the study's sweep, its verdict and doc.

    python analysis/run_study.py credit_assignment                 # = make study-credit-assignment
    python analysis/run_study.py credit_assignment --dry-run       # the budget and the commands, nothing run

Steps (each a command of its own, printed before it runs; a step that fails stops the study, except a
sweep whose failures are some of its jobs (exit code 1: a diverged run is a result, listed by the docs;
the study's own exit code is then 1) and the gate: learners below it get no verdict):

1. ``experiments/train.py -m experiment=<selection experiment>``: the pilot (validation sets only);
2. ``analysis/select_lr.py --experiment <it> --criterion <criterion> --table <table>``;
3. ``analysis/pilot.py --experiment <it> --doc docs/<study>_pilot.md`` (gate, smallest effect of interest);
4. ``experiments/train.py -m experiment=<study>``;
5. ``analysis/study_report.py --experiment <study> --doc docs/<study>.md``.

Run it again after an interruption and the sweeps train only what is missing (same config and code).
``--override KEY=VALUE`` (repeatable) goes to both sweeps, e.g. a smaller trial (a budget below the
declared seeds is refused unless ``--trial``); ``--root`` stands in for the project root (its conf/ holds
the selection table and the smallest-effect file), ``--docs`` for docs/.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `analysis` importable
    sys.path.insert(0, str(ROOT))


from analysis.pilot import GATE_FAILED  # noqa: E402
from analysis.study_runs import PRESETS, Study, read_declaration, sweep_sizes  # noqa: E402

TRAIN = ROOT / "experiments" / "train.py"
SOME_JOBS_FAILED = 1  # a sweep's exit code when some of its jobs failed and the rest finished (2: nothing ran)


def budget_lines(study: Study, name: str, overrides: list[str]) -> tuple[list[str], int]:
    """The declared budget in words, and the study's number of seeds."""
    lines = []
    seeds = 0
    for label, experiment in (("pilot and selection", study.selection.experiment), ("study", name)):
        sizes = sweep_sizes(PRESETS / f"{experiment}.yaml", overrides)
        runs = math.prod(sizes.values()) if sizes else 0
        lines.append(f"[study] {label} (experiment={experiment}): {runs} runs = "
                     + " x ".join(f"{n} {key}" for key, n in sizes.items()))
        seeds = sizes.get("seed", 0)
    return lines, seeds


def steps(study: Study, name: str, overrides: list[str], root: Path, docs: Path, tracking_uri: str | None) -> list[list[str]]:
    py = sys.executable
    uri = [f"tracking.uri={tracking_uri}"] if tracking_uri else []
    rooted = [f"paths.root_dir={root}"] if root != ROOT else []
    store = ["--tracking-uri", tracking_uri] if tracking_uri else []
    pilot = study.selection.experiment
    out = lambda experiment: ["--out", str(root / "reports" / experiment)] if root != ROOT else []  # noqa: E731
    return [
        [py, str(TRAIN), "-m", f"experiment={pilot}", *rooted, *uri, *overrides],
        [py, str(ROOT / "analysis" / "select_lr.py"), "--experiment", pilot, "--criterion", study.selection.criterion,
         "--table", str(study.selection.table), *store],
        [py, str(ROOT / "analysis" / "pilot.py"), "--experiment", pilot, "--preset", str(PRESETS / f"{name}.yaml"),
         "--root", str(root), "--doc", str(docs / f"{name}_pilot.md"), *out(pilot), *store],
        [py, str(TRAIN), "-m", f"experiment={name}", *rooted, *uri, *overrides],
        [py, str(ROOT / "analysis" / "study_report.py"), "--experiment", name, "--root", str(root),
         "--doc", str(docs / f"{name}.md"), *out(f"{name}/study"), *store],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study's preset, conf/experiment/<study>.yaml")
    parser.add_argument("--override", action="append", default=[], help="KEY=VALUE for both sweeps (repeatable)")
    parser.add_argument("--trial", action="store_true", help="allow fewer seeds than the declaration's (a trial, not the study)")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///<project root>/mlflow.db")
    parser.add_argument("--root", type=Path, default=ROOT, help="stands in for the project root (its conf/ holds the tables)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the pilot's and the study's docs go")
    parser.add_argument("--dry-run", action="store_true", help="print the budget and the commands only")
    args = parser.parse_args(argv)
    study = read_declaration(PRESETS / f"{args.study}.yaml", args.root)
    if study.selection is None:
        print(f"error: the study {args.study} declares no selection (its pilot)", file=sys.stderr)
        return 2
    lines, seeds = budget_lines(study, args.study, args.override)
    print(f"[study] {args.study}: budget (declared; the study needs at least {study.min_seeds} seeds)", *lines, sep="\n")
    if seeds < study.min_seeds and not args.trial:
        print(f"error: {seeds} seeds, fewer than the declared {study.min_seeds} (a trial: --trial)", file=sys.stderr)
        return 2
    jobs_failed = False
    for number, command in enumerate(steps(study, args.study, args.override, args.root, args.docs, args.tracking_uri), 1):
        print(f"[study] step {number} of 5: {' '.join(command[1:])}", flush=True)
        if args.dry_run:
            continue
        code = subprocess.run(command, cwd=ROOT).returncode
        if code == GATE_FAILED and number == 3:
            print("[study] some learners are below the gate: the study runs, and gives their comparisons no verdict")
        elif code == SOME_JOBS_FAILED and command[1] == str(TRAIN):
            # A diverged run is a result (the selection leaves out a rate that lost a seed; the pilot's doc and
            # the report list it), and it diverges again on every resume: stopping here would stop the study for good.
            print(f"[study] step {number}: some jobs failed (FAILED in MLflow with the reason; the docs list them); "
                  "the study goes on", file=sys.stderr)
            jobs_failed = True
        elif code != 0:
            print(f"[study] step {number} failed (exit code {code}); run the same command again to resume", file=sys.stderr)
            return code
    return SOME_JOBS_FAILED if jobs_failed else 0


if __name__ == "__main__":
    sys.exit(main())
