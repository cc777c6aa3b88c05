"""The public surface: every namespace lists its names, each name exists and is documented with an
example, and every public Keras object is registered so `.keras` files load with no custom_objects."""

import importlib
import inspect

import keras
import pytest

NAMESPACES = ["pruning", "quantization", "distillation", "factorization", "clustering", "export", "distribute"]


def _public(ns):
    module = importlib.import_module(f"tfcompress.{ns}")
    return [(name, getattr(module, name)) for name in module.__all__]


@pytest.mark.parametrize("ns", NAMESPACES)
def test_all_names_exist_and_are_documented(ns):
    module = importlib.import_module(f"tfcompress.{ns}")
    assert module.__doc__, f"tfcompress.{ns} has no module docstring"
    assert len(set(module.__all__)) == len(module.__all__), f"duplicate names in tfcompress.{ns}.__all__"
    for name, obj in _public(ns):
        doc = inspect.getdoc(obj) or ""
        assert doc.strip(), f"tfcompress.{ns}.{name} has no docstring"
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert "Example" in doc or ">>>" in doc, f"tfcompress.{ns}.{name}: docstring has no example"


from tfcompress._config_object import ConfigObject  # noqa: E402

# Everything that can sit in a saved model's config: layers, callbacks, losses (Keras's and the
# distillation ones), models, and the small config objects (schedules, patterns, schemes).
KERAS_BASES = (keras.layers.Layer, keras.callbacks.Callback, keras.losses.Loss, keras.Model,
               keras.distillation.DistillationLoss, ConfigObject)


@pytest.mark.parametrize("ns", NAMESPACES)
def test_keras_objects_are_registered(ns):
    for name, obj in _public(ns):
        if inspect.isclass(obj) and issubclass(obj, KERAS_BASES):
            registered = keras.saving.get_registered_name(obj)
            assert registered == f"tfcompress>{obj.__name__}", f"{ns}.{name} is not registered: {registered}"


def test_top_level_imports_every_namespace():
    import tfcompress

    for ns in NAMESPACES:
        assert getattr(tfcompress, ns).__name__ == f"tfcompress.{ns}"
