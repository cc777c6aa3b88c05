"""MirroredStrategy over two logical CPU devices gives the same masks as one device."""

import os
import subprocess
import sys

import numpy as np


def test_mirrored_strategy_gives_the_same_masks_as_one_device(tmp_path):
    out = tmp_path / "masks.npz"
    worker = os.path.join(os.path.dirname(__file__), "mirrored_worker.py")
    proc = subprocess.run([sys.executable, worker, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = np.load(out)
    assert int(r["replicas"]) == 2
    steps = 2 * 8  # 512 samples / batch 64, two epochs: the step counter advanced once per global step
    assert list(r["m_steps"]) == list(r["s_steps"]) == [steps, steps]
    for i in range(2):
        np.testing.assert_array_equal(r[f"m_mask{i}"], r[f"s_mask{i}"])
        assert abs((r[f"m_mask{i}"] == 0).mean() - 0.7) <= 0.01
        np.testing.assert_allclose(r[f"m_kernel{i}"], r[f"s_kernel{i}"], atol=1e-5)
