"""Part 3's figures: the folder samples and the transition heat map are drawn."""

import numpy as np

from jaxcnn.data import noise
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.evaluation import plots


def test_folder_sample_grid_and_heat_map_are_drawn(tmp_path):
    data = ArrayDataset(np.zeros((30, 28, 28), np.uint8), np.repeat(np.arange(10), 3).astype(np.int32),
                        np.full(30, -1, np.int32), tuple(str(d) for d in range(10)))
    plots.plot_folder_samples(data, np.zeros(30, int), tmp_path / "grid.png", per_folder=3)
    plots.plot_folder_samples(data, None, tmp_path / "plain.png", per_folder=3)
    plots.plot_transition(np.eye(10)[noise.derangement(10, 0)], tmp_path / "T.png", "test")
    for name in ("grid.png", "plain.png", "T.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
