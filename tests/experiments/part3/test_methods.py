"""Part 3's methods: which use clean labels, where each applies, their losses, and the pseudo-labels
of self-training."""

import numpy as np

from jaxcnn.experiments import part3
from jaxcnn.experiments.part3.methods import METHODS, fits, method_of, pseudo_labels, train_config
from tests.experiments.part3.conftest import views


def test_methods_say_whether_they_use_clean_labels_and_where_they_apply():
    assert not any(METHODS[m].uses_clean_labels for m in ("folder", "comp_forward", "comp_nn", "self_train"))
    assert all(METHODS[m].uses_clean_labels for m in ("relabel", "forward", "oracle_relabel"))
    cfg = part3.get_config("quick")
    renamed = views("permutation", "clean", permutation=True)
    comp = train_config(cfg, METHODS["comp_forward"], renamed)
    np.testing.assert_allclose(comp.label_transition, (1 - np.eye(10)) / 9)  # the known form, not the oracle's
    oracle_t = train_config(cfg, METHODS["forward"], renamed)
    np.testing.assert_allclose(oracle_t.label_transition, np.eye(10))
    assert "complementary" in fits(METHODS["comp_nn"], renamed)
    assert fits(METHODS["relabel"], renamed) is None
    assert "is not a permutation" in fits(METHODS["relabel"], views("permutation"))
    assert method_of("comp_nn_trunk") == (METHODS["comp_nn"], True)


def test_pseudo_labels_rule_out_the_folder_and_keep_only_confident_ones():
    # the teacher hesitates between 3 and 5 on every image; the image's folder decides it
    probs = np.zeros((4, 10))
    probs[:, 3] = probs[:, 5] = 0.5
    probs[3] = 0.1  # no idea at all: left out
    folders = np.array([5, 3, 7, 5], np.int32)
    keep, labels = pseudo_labels(probs, folders, part3.get_config("quick"), METHODS["comp_nn"], {})
    assert keep.tolist() == [0, 1] and labels.tolist() == [3, 5]  # folder 7 leaves a tie (0.5): not confident
