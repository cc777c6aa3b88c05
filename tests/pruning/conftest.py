"""Fixtures of the pruning tests; makes the shared model builders (pruning_models.py) importable
under pytest's importlib import mode."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pruning_models import MODELS  # noqa: E402


@pytest.fixture(params=sorted(MODELS))
def model_kind(request):
    return request.param
