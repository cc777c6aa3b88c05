"""Every docstring example of the package runs and prints what it says (doctest), so the examples users
copy from `help()` stay true."""

import doctest
import importlib
import pkgutil

import pytest

import tfcompress

MODULES = sorted(m.name for m in pkgutil.walk_packages(tfcompress.__path__, "tfcompress.")
                 if not m.name.endswith("__main__") and "_tfc_sparse_ops" not in m.name)  # the C extension


def test_the_package_has_examples():
    examples = sum(len(t.examples) for name in MODULES
                   for t in doctest.DocTestFinder().find(importlib.import_module(name)))
    assert len(MODULES) > 50 and examples > 200, (len(MODULES), examples)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), report=True,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
