"""The report's first section: each part's answer in a sentence (its ``headline``), with a link to
its details."""

from __future__ import annotations

import json
from pathlib import Path

from jaxcnn.document import Bullets, Section
from jaxcnn.evaluation.evaluate import evaluation_files
from jaxcnn.experiments import PROFILES, part1, part2, part3, part_module, profiles_of
from jaxcnn.report.render import anchor


GLANCE_TITLE = "Results at a glance"


def glance_section(workdir: Path, results: dict[str, dict | None], cv: dict | None) -> Section:
    """The three answers first, each from its part's results and linked to its section, then the
    profile each part ran."""
    return Section(GLANCE_TITLE, [Bullets([
        f"{part1.headline(results['part1'], cv, part1_evaluations(workdir))} {see(part1.TITLE)}.",
        f"{part2.headline(results['part2'])} {see(part2.TITLE)}.",
        f"{part3.headline(results['part3'])} {see(part3.TITLE)}.",
        profiles_text(results),
    ])])


def profiles_text(results: dict[str, dict | None]) -> str:
    """Which profile (``--profile``) each part's results are of, or that its configuration is its own."""
    ran = {name: profiles_of(part_module(name), found["config"]) for name, found in results.items() if found}
    if not ran:
        return "**Profile**: no part has run yet."
    shown = [f"{name} {' = '.join(f'`{p}`' for p in profiles)}" if profiles else
             f"{name} a configuration of its own (`--set`)" for name, profiles in ran.items()]
    notes = "; ".join(f"`{p}`: {PROFILES[p]}" for p in dict.fromkeys(p for found in ran.values() for p in found))
    return f"**Profile** (`--profile`): {', '.join(shown)}" + (f" ({notes})." if notes else ".")


def see(title: str) -> str:
    return f"([details](#{anchor(title)}))"


def part1_evaluations(workdir: Path) -> dict[str, float]:
    """The accuracy of each ``evaluate`` run on part 1's checkpoints, by data set name."""
    return {path.stem.removeprefix("eval_"): json.loads(path.read_text())["accuracy"]
            for path in evaluation_files(workdir) if "part1" in (path.parent.name, path.parent.parent.name)}
