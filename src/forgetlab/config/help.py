"""What ``python experiments/train.py --help`` lists for each config group: its options, the YAML files of
``conf/<group>/`` and, for a group of parts, every registered part (an extension's without a YAML too),
the default marked ``*``. The help template (conf/hydra/help/forgetlab.yaml) reads them with the resolver
``${forgetlab.options:<group>}``, so a new option never needs the template edited."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import yaml
from omegaconf import OmegaConf

# conf/ of the project (src/forgetlab/config/help.py -> the root)
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
RESOLVER = "forgetlab.options"
INDENT = " " * 18  # where the option lines start in the printed help
WIDTH = 110


def default_choices(conf_dir: Path) -> dict[str, str | None]:
    """group -> the option the primary config's defaults list chooses (None: none by default)."""
    primary = Path(conf_dir) / "config.yaml"
    stat = primary.stat()
    return dict(_default_choices(primary, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _default_choices(primary: Path, mtime_ns: int, size: int) -> tuple[tuple[str, str | None], ...]:
    # OmegaConf resolves the help template's ${forgetlab.options:...} whenever Hydra merges the hydra
    # node, ~12 times per composition: parsed once per version of the file, not each time.
    defaults = yaml.safe_load(primary.read_text()).get("defaults", [])
    return tuple((k, v) for entry in defaults if isinstance(entry, dict) for k, v in entry.items())


def options(group: str, conf_dir: Path, parts: list[str] = ()) -> str:
    """The options of ``group`` as the help shows them: wrapped, the default marked, or '(default: none)'."""
    names = sorted({p.stem for p in (conf_dir / group).glob("*.yaml")} | set(parts), key=str)
    default = default_choices(conf_dir).get(group)
    shown = ", ".join(f"{n}*" if n == default else n for n in names)
    if default is None:
        shown += "   (default: none)"
    lines = textwrap.wrap(shown, WIDTH - len(INDENT), break_long_words=False, break_on_hyphens=False)
    return f"\n{INDENT}".join(lines)


def learner_presets(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """preset name -> the algorithm it chooses, for every ``conf/learner/*.yaml`` (the study presets in
    its subfolders set learning rates of their own and are left out)."""
    presets = {}
    for path in sorted((Path(conf_dir) / "learner").glob("*.yaml")):
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
        for entry in defaults:
            if isinstance(entry, dict) and "override /algorithm" in entry:
                presets[path.stem] = entry["override /algorithm"]
    return presets


def learner_hint(algorithm: str, conf_dir: Path = CONF_DIR) -> str:
    """" Use learner=rnn_rtrl ..." for an algorithm chosen without the network it trains, else ""."""
    names = [name for name, chosen in learner_presets(conf_dir).items() if chosen == algorithm]
    if not names:
        return ""
    return (f" Use {' or '.join(f'learner={n}' for n in names)} instead of algorithm={algorithm}: a learner preset "
            "switches network, algorithm and input form together.")


def register_help_resolver(conf_dir: Path, parts_of) -> None:
    """``${forgetlab.options:<group>}``; ``parts_of(group)`` names the parts registered for a group of parts."""
    OmegaConf.register_new_resolver(RESOLVER, lambda group: options(group, Path(conf_dir), parts_of(group)),
                                    replace=True)
