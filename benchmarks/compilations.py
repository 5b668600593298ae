"""How many XLA programs a part compiles, and how long compiling takes, by program name.

    python benchmarks/compilations.py --data-root DATA part2 part3      # the --quick configurations
    python benchmarks/compilations.py --data-root DATA --full part2     # the study's configurations

Each part runs in this process, in a fresh work directory under --workdir (default a temporary
folder), after ``jax.clear_caches()``; without JAX_COMPILATION_CACHE_DIR nothing is loaded from a
persistent cache on the CPU. The train-step programs (``_step_population``, ``train_epoch_population``)
are the expensive ones: issue 22 bounds them at one per distinct model (architecture, loss, batch,
population, dtype).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import describe  # noqa: E402  (beside this file)
from jaxcnn import paths  # noqa: E402
from jaxcnn.compilation import TRAIN_STEP_PROGRAMS, counting_compilations  # noqa: E402
from jaxcnn.experiments import part1, part2, part3  # noqa: E402
from jaxcnn.study import upstream_runs  # noqa: E402

PARTS = {"part1": part1, "part2": part2, "part3": part3}


def count(name: str, data_root: Path, workdir: Path, quick: bool) -> dict:
    module = PARTS[name]
    jax.clear_caches()
    start = time.perf_counter()
    with counting_compilations() as compiled:
        module.run(module.get_config("quick" if quick else "full"), data_root, workdir / name, **upstream_runs(name, workdir))
    seconds = collections.Counter()
    for program, took in compiled:
        seconds[program] += took
    names = collections.Counter(program for program, _ in compiled)
    return {"part": name, "compilations": len(compiled), "compile_s": sum(seconds.values()),
            "train_step_programs": sum(names[p] for p in TRAIN_STEP_PROGRAMS),
            "wall_s": time.perf_counter() - start, "by_program": names, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", choices=sorted(PARTS))
    parser.add_argument("--data-root", help="default: $JAXCNN_DATA, else ./data")
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, deleted at the end")
    parser.add_argument("--full", action="store_true", help="the study's configurations, not --quick")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(describe(os.cpu_count()))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [count(name, paths.data_root(args.data_root), args.workdir or Path(tmp), not args.full)
                for name in args.parts]
    print(f"\n| part | compilations | train-step programs | compiling s | wall s |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['part']}{'' if args.full else ' --quick'} | {row['compilations']} | "
              f"{row['train_step_programs']} | {row['compile_s']:.1f} | {row['wall_s']:.0f} |")
    for row in rows:
        print(f"\n{row['part']}: " + ", ".join(f"{p} x{n} ({row['seconds'][p]:.1f} s)"
                                               for p, n in row["by_program"].most_common()))


if __name__ == "__main__":
    main()
