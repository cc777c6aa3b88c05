"""Entry point of the Bazel py_test targets in BUILD: runs pytest on the files given as args."""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(sys.argv[1:]))
