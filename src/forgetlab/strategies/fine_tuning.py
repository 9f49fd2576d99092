"""Fine-tuning: each task's samples learned in turn and nothing else, the baseline every strategy is
measured against (van de Ven et al. 2022's "None"). The default strategy: a run that names none is
a fine-tuning run, with the numbers and the config hash it had before strategies existed."""

from __future__ import annotations

from forgetlab.strategies.base import Strategy


class FineTuning(Strategy):
    name = "fine_tuning"

    @classmethod
    def label(cls, run) -> str:
        return ""  # the learner's own label: what every run was before strategies existed
