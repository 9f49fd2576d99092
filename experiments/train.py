"""Train one configuration, or a sweep with -m.

    python experiments/train.py                                  # defaults from conf/config.yaml
    python experiments/train.py algorithm.lr=0.1 task_sequence=permuted_digits
    python experiments/train.py -m seed=0,1,2 task_sequence.scenario=class,task,domain
    python experiments/train.py -m experiment=quickstart
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))

import hydra  # noqa: E402
from hydra._internal.utils import get_args_parser  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from forgetlab import contract  # noqa: E402
from forgetlab.config import ConfigError, check_command_line, register_configs  # noqa: E402
from forgetlab.experiment import RunContext, run_experiment  # noqa: E402
from forgetlab.tracking.store import StoreError  # noqa: E402
from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import read_sweep  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep = read_sweep(hc.sweep.dir) if multirun else None
    context = RunContext(
        overrides=list(hc.overrides.task),
        sweep_id=sweep.sweep_id if sweep else None,
        parent_run_id=sweep.parent_run_id if sweep else None,
        quiet=multirun,
    )
    try:
        final = run_experiment(cfg, context)
    except ConfigError as error:
        if multirun:  # the sweeper validated every job; let the launcher record the failure
            raise
        print(f"Invalid config: {error}", file=sys.stderr)
        sys.exit(2)
    except StoreError as error:
        if multirun:
            raise
        print(f"Tracking store error: {error}", file=sys.stderr)
        sys.exit(2)
    print(" ".join(f"{k}={v:.4f}" for k, v in final.items()), flush=True)
    return final.get(contract.FINAL_ACC)


def check_arguments() -> None:
    """Exit 2 with forgetlab's message when the command line does not compose (see check_command_line)."""
    args = get_args_parser().parse_args()
    if args.help or args.hydra_help or args.shell_completion or args.info:
        return
    try:
        check_command_line(str(ROOT / "conf"), args.config_name or "config", args.overrides, args.multirun)
    except ConfigError as error:
        print(f"Invalid config: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_arguments()
    main()
