"""jaxcnn: a reproducible transfer-learning study on handwritten characters in JAX/Flax.

Layers, each importing only those before it:

1. ``errors``, ``paths``, ``config``, ``processes``, ``progress``, ``rundir``, ``compilation``, ``document``,
   ``probabilities``: what every layer shares;
2. ``data``: image files, preprocessing, Chars74K, class folders, MNIST, label corruption, audits;
3. ``model``: the CNN (a trunk and a head, by name);
4. ``training``: the optimiser, losses, steps, the seed population, the loop, checkpoints, transfer, data
   parallelism;
5. ``evaluation``: metrics, convergence, scoring saved runs, transition matrices, figures;
6. ``experiments``: parts 1-3, each ``get_config`` / ``run`` / ``sections`` / ``headline``;
7. ``report`` and ``study``; 8. ``cli`` (``python -m jaxcnn``).

The names below are the public API; the modules hold the rest.
"""

from __future__ import annotations

import importlib
import importlib.metadata

_PUBLIC = {  # name -> its module, imported on first use so that ``python -m jaxcnn --help`` stays instant
    "AugmentConfig": "jaxcnn.config", "ModelConfig": "jaxcnn.config", "TrainConfig": "jaxcnn.config",
    "override": "jaxcnn.config", "ArrayDataset": "jaxcnn.data.dataset", "load_chars74k": "jaxcnn.data.chars74k",
    "load_class_folders": "jaxcnn.data.classfolders", "load_mnist": "jaxcnn.data.mnist",
    "to_mnist_convention": "jaxcnn.data.preprocess", "CNN": "jaxcnn.model", "fit": "jaxcnn.training.loop",
    "load_run": "jaxcnn.training.checkpoint", "graft": "jaxcnn.training.transfer",
    "pretrained_variables": "jaxcnn.training.transfer", "evaluate_run": "jaxcnn.evaluation.evaluate",
    "predict": "jaxcnn.evaluation.predict",
    "PARTS": "jaxcnn.experiments", "part_module": "jaxcnn.experiments", "write_report": "jaxcnn.report",
}
__all__ = sorted(_PUBLIC)
try:
    __version__ = importlib.metadata.version("jaxcnn")
except importlib.metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
    __version__ = "0+source"


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'jaxcnn' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
