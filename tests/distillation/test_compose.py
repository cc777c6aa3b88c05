"""Distilling into students from the other namespaces: factorized + pruned, and QAT; wrappers kept."""

import keras
import numpy as np

from tfcompress.distillation import Distiller, SoftTargetLoss
from tfcompress.export import export_tflite, verify
from tfcompress.factorization import FactorizedDense, factorize
from tfcompress.pruning import ConstantSparsity, PruneWrapper, PruningCallback, prune
from tfcompress.quantization import quantize


def _mlp(width, name):
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(width, activation="relu", name=f"{name}_fc"),
                             keras.layers.Dense(10, name=f"{name}_out")], name=name)


def test_factorized_pruned_and_qat_students(digits):
    (x, y), (x_test, _) = digits
    x, y = x[:512], y[:512]
    teacher = _mlp(64, "t")
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=2, verbose=0)

    # Factorized then pruned student: the Distiller trains it with the pruning callback.
    base = _mlp(48, "s")
    factorized, _ = factorize(base, rank={"s_fc": 8})
    student = prune(factorized, schedule=ConstantSparsity(0.5, begin_step=0, frequency=4))
    distiller = Distiller(teacher, student, loss=SoftTargetLoss(2.0))
    distiller.compile("adam")
    distiller.fit(x, y, epochs=1, batch_size=64, callbacks=[PruningCallback()], verbose=0)
    wrappers = [l for l in distiller.student.layers if isinstance(l, PruneWrapper)]
    # tfcompress.pruning wraps the plain Dense; the FactorizedDense stays factorized (not prunable there).
    assert [w.name for w in wrappers] == ["prune_s_out"]
    assert isinstance(distiller.student.get_layer("s_fc"), FactorizedDense)
    tflite, report = export_tflite(distiller.student)  # strips the pruning wrappers
    out_kernel = [t for n, t in report.sparsity.items()]
    assert max(out_kernel) >= 0.45  # the pruned (10 x 48) output kernel is half zeros in the file
    assert verify(distiller.student, tflite, x_test).top1_agreement >= 0.98

    # QAT student: fake-quant kept, exports fully int8 without representative data.
    qat = quantize(_mlp(32, "q"))
    distiller = Distiller(teacher, qat)
    distiller.compile("adam")
    distiller.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert distiller.student is qat
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer
    assert verify(qat, tflite, x_test).top1_agreement >= 0.9
