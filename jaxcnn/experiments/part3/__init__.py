"""Part 3: an MNIST-like set whose folders carry the wrong labels; find out how, and learn anyway.

The default set is a replica of the original task's ``mnistTask3.zip``: MNIST train as JPEGs in
``mnistTask/<k>/``, zipped on a Mac, with **complementary labels** (folder k holds every digit but
k). The study audits the images against clean MNIST, diagnoses the labels twice, trains on them as
they are and with methods that fit the diagnosed kind, and scores every model on the *clean*
MNIST test set at its last epoch.

- The oracle view: a model of clean MNIST names the digit of every image, which estimates the
  transition matrix T[i, j] = P(folder j | digit i); ``transitions.classify_transition`` names its kind.
- The oracle-free view: a model trained on the folder labels alone, cross-validated over the
  folders, gives held-out posteriors whose shape tells the kind (a hole for complementary labels,
  a peak for clean or renamed ones); it cannot tell a renaming from clean data.
- Learning without any clean label (``uses_clean_labels`` false): forward correction with the
  known form T = (J - I)/(K - 1) (Yu et al. 2018), the non-negative complementary-label risk
  (Ishida et al. 2019), and self-training on a teacher's confident pseudo-labels. Methods that use
  the oracle (relabelling by its mapping, forward correction with its T, its own labels as an
  upper bound) are marked ``uses_clean_labels`` true. No model is selected on the test set.

The truth file that ``make_noisy_mnist`` writes beside a set is read once, at the very end, to
score the estimate; nothing is estimated or trained from it. See ``docs/part3.md``.

The package goes by stage: ``config`` (``Part3Config``, its profiles), ``methods`` (how each model
learns, pure), ``sources`` (the set, the part-1 trunk, the oracle), ``diagnosis`` (reads, never
trains), ``run`` (plans, trains, records), ``figures`` and ``report`` (the section and headline).
"""

from jaxcnn.experiments.part3.config import Part3Config, get_config, planned_images
from jaxcnn.experiments.part3.report import TITLE, headline, sections
from jaxcnn.experiments.part3.run import run

# the part protocol (jaxcnn.experiments), and the title the report's glance links to
__all__ = ["Part3Config", "get_config", "planned_images", "run", "sections", "headline", "TITLE"]
