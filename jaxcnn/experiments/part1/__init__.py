"""Part 1: a 62-class handwritten-character CNN trained from scratch on every image, by stage:
``config`` (the recipe and part 1's data), ``folds`` (``cv`` and ``ablate``: the recipe judged by
folds, and their statistics), ``final`` (the final model on every image, last epoch kept) and
``report`` (the sections, the headline, the fold and ablation tables). Here: the part protocol
(``jaxcnn.experiments``) and the title its glance links to."""

from jaxcnn.experiments.part1.config import Part1Config, get_config, planned_images
from jaxcnn.experiments.part1.final import run
from jaxcnn.experiments.part1.report import TITLE, headline, sections

__all__ = ["Part1Config", "get_config", "planned_images", "run", "sections", "headline", "TITLE"]
