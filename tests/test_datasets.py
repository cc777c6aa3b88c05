import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from tfcompress.datasets import load_digits


def test_split_is_stratified_disjoint_and_covers_everything():
    (x_tr, y_tr), (x_te, y_te) = load_digits(test_fraction=0.2, seed=3)
    ref = sklearn_digits()
    assert len(x_tr) + len(x_te) == len(ref.images)
    assert x_tr.dtype == np.float32 and x_tr.shape[1:] == (8, 8, 1)
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    # every digit is held out in proportion to its frequency
    for d in range(10):
        n = int((ref.target == d).sum())
        assert int((y_te == d).sum()) == int(round(n * 0.2))
    # the images are the original ones /16 (multiset equality via sorted sums)
    all_x = np.concatenate([x_tr, x_te])[..., 0]
    np.testing.assert_allclose(np.sort(all_x.sum(axis=(1, 2))), np.sort((ref.images / 16).sum(axis=(1, 2))), rtol=1e-6)


def test_upscale_repeats_pixels():
    (x1, _), _ = load_digits(seed=1)
    (x2, _), _ = load_digits(seed=1, upscale=2)
    assert x2.shape[1:] == (16, 16, 1)
    np.testing.assert_array_equal(x2[:, ::2, ::2], x1)
    np.testing.assert_array_equal(x2[:, 1::2, 1::2], x1)


@pytest.mark.parametrize("kwargs", [{"test_fraction": 0}, {"test_fraction": 1.5}, {"upscale": 0}, {"upscale": 1.5}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        load_digits(**kwargs)
