"""Pruned models export through tfcompress.export (strip in prepare_for_export) with parity."""

import gzip

import keras
import numpy as np

from pruning_models import apply_masks_now
from tfcompress.export import export_tflite, verify
from tfcompress.pruning import ConstantSparsity, prune

L = keras.layers


def test_pruned_model_exports_with_parity_and_gzips_smaller(digits):
    (_, _), (xt, _) = digits
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu"), L.Flatten(),
                              L.Dense(64, activation="relu"), L.Dense(10)])
    pruned = prune(model, schedule=ConstantSparsity(0.8, frequency=1))
    apply_masks_now(pruned)
    tflite, _ = export_tflite(pruned)
    report = verify(pruned, tflite, xt[:64])
    assert report.max_abs_error < 1e-5 and report.top1_agreement == 1.0
    dense_tflite, _ = export_tflite(model)
    assert len(gzip.compress(tflite)) < 0.5 * len(gzip.compress(dense_tflite))
