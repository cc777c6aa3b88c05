"""Shared pytest fixtures: quiet TensorFlow, deterministic seeds, the offline digits data."""

import os
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfcompress.datasets import load_digits  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def digits():
    """((x_train, y_train), (x_test, y_test)) of sklearn digits, NHWC float32 8x8x1."""
    return load_digits()


@pytest.fixture
def rng(request):
    """A generator seeded by the test's id: the same numbers whatever order or worker runs it."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
