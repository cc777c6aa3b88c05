"""The model-surgery engine (tfcompress/_surgery.py) and `tfcompress.strip`: every model kind,
keras.ops nodes kept, weights copied, the user's model never mutated."""

import keras
import numpy as np
import pytest
from keras import ops

from tfcompress.export import export_tflite, run_tflite
from tfcompress.pruning import ConstantSparsity, PruningCallback, prune

L = keras.layers


def _apply_masks(pruned):
    cb = PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    cb.on_train_end()


def _cosine(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ops_model():
    x = keras.Input((8,))
    h = L.Dense(16, name="d1")(x)
    h = h * 0.5 + 1.0  # keras.ops nodes (Multiply, Add), not layers
    h = ops.concatenate([h, ops.relu(h)], axis=-1)
    return keras.Model(x, L.Dense(3, name="d2")(h), name="ops_model")




def test_prune_keeps_keras_ops_nodes_and_exports_with_parity():
    import tfcompress

    model = _ops_model()
    before = [w.copy() for w in model.get_weights()]
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
    _apply_masks(pruned)
    plain = tfcompress.strip(pruned)
    names = [type(op).__name__ for op in plain.operations]
    assert names.count("Dense") == 2 and "Multiply" in names and "Concatenate" in names
    # independent reference: the model's own math in numpy with the 50 % smallest |w| zeroed
    x = np.random.default_rng(0).random((5, 8)).astype("float32")
    k1, b1, k2, b2 = [w.copy() for w in before]
    for k in (k1, k2):
        k[np.abs(k) <= np.sort(np.abs(k).ravel())[k.size // 2 - 1]] = 0.0
    h = (x @ k1 + b1) * 0.5 + 1.0
    expected = np.concatenate([h, np.maximum(h, 0)], -1) @ k2 + b2
    np.testing.assert_allclose(np.asarray(plain(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pruned(x)), expected, rtol=1e-5, atol=1e-5)
    tfl, _ = export_tflite(plain)
    np.testing.assert_allclose(run_tflite(tfl, x), expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(before, model.get_weights()):  # the user's model is untouched
        np.testing.assert_array_equal(a, b)


def test_mobilenet_v3_small_prune_strip_export_matches_keras():
    import tfcompress

    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                                classifier_activation=None)
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
    _apply_masks(pruned)
    plain = tfcompress.strip(pruned)
    assert not tfcompress._surgery.has_wrappers(plain)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    keras_out = np.asarray(plain(x))
    np.testing.assert_allclose(np.asarray(pruned(x)), keras_out, rtol=1e-4, atol=1e-4)
    assert _cosine(keras_out, np.asarray(model(x))) < 0.9999  # the masks changed the function
    tfl, _ = export_tflite(pruned)  # export strips by itself
    assert _cosine(run_tflite(tfl, x), keras_out) > 0.999


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class SurgeryNet(keras.Model):
    """A subclassed model with a layer attribute and a list of layers."""

    def __init__(self, units=12, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.d1 = L.Dense(units, activation="relu", name="net_d1")
        self.blocks = [L.Dense(units, name=f"net_b{i}") for i in range(2)]
        self.out = L.Dense(3, name="net_out")

    def call(self, x):
        h = self.d1(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_pruned_subclassed_model_is_built_owns_no_orphans_round_trips_and_exports(tmp_path):
    import tfcompress

    model = SurgeryNet()
    x = np.random.default_rng(0).random((4, 10)).astype("float32")
    model(x)
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
    assert pruned.built and isinstance(pruned, SurgeryNet)
    assert [type(l).__name__ for l in pruned.layers] == ["PruneWrapper"] * 4
    # 4 x (kernel, bias) trainable + 4 x (mask, step): nothing from the replaced Dense layers
    assert len(pruned.trainable_weights) == 8 and len(pruned.weights) == 16
    _apply_masks(pruned)
    expected = np.asarray(pruned(x))
    path = str(tmp_path / "sub.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == ["PruneWrapper"] * 4
    np.testing.assert_array_equal(np.asarray(loaded(x)), expected)
    masks = [w.numpy() for w in loaded.weights if "mask" in w.path]
    assert all(abs(m.mean() - 0.5) < 0.05 for m in masks)
    plain = tfcompress.strip(loaded)
    assert type(plain) is SurgeryNet and [type(l).__name__ for l in plain.layers] == ["Dense"] * 4
    np.testing.assert_allclose(np.asarray(plain(x)), expected, rtol=1e-6, atol=1e-6)
    tfl, _ = export_tflite(loaded)
    np.testing.assert_allclose(run_tflite(tfl, x), expected, rtol=1e-5, atol=1e-5)


_LOADER = """
import sys, numpy as np, keras
import tfcompress  # the one import: registers every tfcompress class
for path in sys.argv[1:]:
    try:
        m = keras.saving.load_model(path)
        np.save(path + ".npy", np.asarray(m(np.load(path + ".x.npy"))))
        print("OK", path, [type(l).__name__ for l in m.layers])
    except Exception as e:
        print("ERR", path, type(e).__name__, str(e).replace(chr(10), " ")[:2000])
"""


def test_import_tfcompress_alone_loads_pruned_qat_and_clustered_files(tmp_path):
    import subprocess
    import sys

    from tfcompress.clustering import cluster
    from tfcompress.quantization import quantize

    base = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                             L.Dense(5)])
    x = np.random.default_rng(0).random((3, 6, 6, 1)).astype("float32")
    net = SurgeryNet()
    net(x.reshape(3, -1)[:, :10])
    made = {"pruned": prune(base, schedule=ConstantSparsity(0.5)), "qat": quantize(base),
            "clustered": cluster(base, n_clusters=4, min_weights=1),
            "subclassed_pruned": prune(net, schedule=ConstantSparsity(0.5))}
    paths, expected = [], {}
    for name, model in made.items():
        path = str(tmp_path / f"{name}.keras")
        xin = x.reshape(3, -1)[:, :10] if name.startswith("subclassed") else x
        model.save(path)
        np.save(path + ".x.npy", xin)
        expected[path] = np.asarray(model(xin))
        paths.append(path)
    import os

    def load_in_child(files, only_tfcompress=False):
        path = [p for p in sys.path if p]
        if only_tfcompress:  # a path holding tfcompress and nothing of the tests
            import tfcompress

            os.symlink(os.path.dirname(tfcompress.__file__), tmp_path / "tfcompress")
            path = [str(tmp_path)]
        env = {"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run([sys.executable, "-c", _LOADER, *files], capture_output=True, text=True,
                             env=env, timeout=300, cwd="/").stdout
        return {line.split()[1]: line for line in out.splitlines() if line.startswith(("OK", "ERR"))}

    lines = load_in_child(paths)
    for path in paths:
        assert lines[path].startswith("OK"), lines.get(path)
        np.testing.assert_allclose(np.load(path + ".npy"), expected[path], rtol=1e-5, atol=1e-5)
    assert "PruneWrapper" in lines[paths[3]]  # the subclassed model came back with its wrappers
    # Without the module defining SurgeryNet the error names the missing class (the root cause).
    lines = load_in_child(paths[3:], only_tfcompress=True)
    assert lines[paths[3]].startswith("ERR") and "SurgeryNet" in lines[paths[3]], lines[paths[3]]


def test_no_graph_surgery_outside_the_engine():
    import pathlib

    import tfcompress

    root = pathlib.Path(tfcompress.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "_surgery.py"
                 and ("clone_model(" in p.read_text() or "clone_function=" in p.read_text())]
    assert offenders == []
    prepare = (root / "export" / "prepare.py").read_text()
    for technique in ("pruning", "clustering", "quantization", "factorization", "distillation"):
        assert f"tfcompress.{technique}" not in prepare  # export knows no technique


def test_strip_unwraps_every_technique_in_a_nested_model_and_never_mutates():
    import tfcompress
    from tfcompress.clustering import ClusterWeights, cluster

    inner = keras.Sequential([keras.Input((8,)), L.Dense(16, name="in1"), L.Dense(16, name="in2")],
                             name="inner")
    x = keras.Input((8,))
    model = keras.Model(x, L.Dense(4, name="top")(inner(x) * 2.0), name="outer")
    before = [w.copy() for w in model.get_weights()]
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1), layers=["in1", "top"])
    _apply_masks(pruned)
    clustered = cluster(tfcompress.strip(pruned), n_clusters=4, layers=["in2"])
    assert any(isinstance(l, ClusterWeights) for l in tfcompress._surgery.iter_layers(clustered))
    plain = tfcompress.strip(clustered)
    kinds = {type(l).__name__ for l in tfcompress._surgery.iter_layers(plain)}
    assert kinds == {"InputLayer", "Dense"}
    xs = np.random.default_rng(3).random((4, 8)).astype("float32")
    np.testing.assert_allclose(np.asarray(plain(xs)), np.asarray(clustered(xs)), rtol=1e-5, atol=1e-5)
    k_in1 = plain.get_layer("inner").get_layer("in1").kernel.numpy()
    k_in2 = plain.get_layer("inner").get_layer("in2").kernel.numpy()
    assert abs(np.mean(k_in1 == 0) - 0.5) < 0.01 and len(np.unique(k_in2)) <= 4
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    copy = tfcompress.strip(model)  # nothing to strip: a copy, not the same object
    assert copy is not model and copy.get_layer("inner") is not model.get_layer("inner")


class _FixedClassNet(keras.Model):
    """A subclassed model whose from_config ignores `cls` (returns its own class)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d = L.Dense(4)

    def call(self, x):
        return self.d(x)

    @classmethod
    def from_config(cls, config):
        return _FixedClassNet(**config)


def test_subclassed_rebuild_uses_no_keras_private_tracker_and_explains_a_foreign_from_config():
    import inspect

    import tfcompress._surgery as surgery

    # the engine hands replacements to __init__ instead of untracking layers with Keras' _tracker
    assert "_tracker" not in inspect.getsource(surgery)
    model = _FixedClassNet()
    model(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"return `cls\(\*\*config\)` from from_config"):
        prune(model, schedule=ConstantSparsity(0.5))
    # the user's model is untouched, and a plain copy (no replacement) still works
    assert [type(l).__name__ for l in model.layers] == ["Dense"]


def test_subclassed_copy_tracks_only_the_replacements_and_init_side_effects_still_run():
    model = SurgeryNet(units=5)
    x = np.random.default_rng(2).random((3, 10)).astype("float32")
    model(x)
    pruned = prune(model, schedule=ConstantSparsity(0.5), layers=["net_b0", "net_out"])
    kinds = [type(l).__name__ for l in pruned.layers]
    assert sorted(kinds) == ["Dense", "Dense", "PruneWrapper", "PruneWrapper"]
    assert pruned.units == 5 and isinstance(pruned.blocks, list) and len(pruned.blocks) == 2
    assert type(pruned.blocks[0]).__name__ == "PruneWrapper" and type(pruned.blocks[1]).__name__ == "Dense"
    # every variable belongs to one of the tracked layers: none from the Dense layers __init__ made
    tracked = {id(v) for l in pruned.layers for v in l.weights}
    assert {id(v) for v in pruned.weights} == tracked and len(pruned.weights) == 2 * 4 + 2 * 2
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)
