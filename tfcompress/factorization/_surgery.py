"""Model surgery shared by factorization and clustering: clone a model, replacing some layers.

Private module: `replace_layers` clones a Sequential or Functional model (nested ones too), asks
`make(layer)` for a replacement of each leaf layer, copies the weights of every kept layer and lets
`init(old_layer, new_layer)` initialise each replacement. The given model is never mutated.
"""

import keras


def _is_graph_model(model):
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and type(model).__name__ == "Functional"
    ) or (isinstance(model, keras.Model) and getattr(model, "_is_graph_network", False))


def check_graph_model(model, what):
    """Raises a helpful error unless `model` is a Sequential or Functional keras.Model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} expects a keras.Model, got {type(model).__name__}.")
    if not _is_graph_model(model):
        raise ValueError(
            f"{what} cannot rewrite model '{model.name}' of class {type(model).__name__}: it is a "
            "subclassed keras.Model whose graph Keras cannot clone. Build it as a Functional or "
            "Sequential model, or replace its layers yourself in its __init__ (see the layer classes "
            "of this namespace and their `from_layer` helpers)."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"{what}: model '{model.name}' is not built. Give it an `keras.Input` or call it once "
            "on data before rewriting it."
        )


def replace_layers(model, make, init, what):
    """Returns a copy of `model` where `make(layer)` (if not None) replaces each leaf layer.

    Args:
        model: A built Sequential or Functional model (may contain nested ones).
        make: `fn(layer) -> keras.layers.Layer | None`; None keeps a fresh copy of the layer.
        init: `fn(old_layer, new_layer)` called after the copy is built, for each replacement.
        what: Name of the calling function, for error messages.
    """
    check_graph_model(model, what)
    replaced = {}

    def clone_fn(layer):
        new = make(layer)
        if new is None:
            return layer.__class__.from_config(layer.get_config())
        replaced[id(layer)] = new
        return new

    new_model = keras.models.clone_model(model, clone_function=clone_fn, recursive=True)

    def walk(old, new):
        old_layers, new_layers = list(old.layers), list(new.layers)
        if len(old_layers) != len(new_layers):
            raise RuntimeError(f"{what}: the clone of '{old.name}' has a different layer count.")
        for lo, ln in zip(old_layers, new_layers):
            if isinstance(lo, keras.Model) and _is_graph_model(lo):
                walk(lo, ln)
            elif id(lo) in replaced and replaced[id(lo)] is ln:
                init(lo, ln)
            else:
                ln.set_weights(lo.get_weights())

    walk(model, new_model)
    return new_model


def iter_layers(model):
    """Yields the leaf layers of a model, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def check_layer_names(model, layers, what):
    """Raises a ValueError naming every entry of `layers` that is not a layer of `model`."""
    names = {layer.name for layer in iter_layers(model)}
    missing = sorted(set(layers) - names)
    if missing:
        raise ValueError(f"{what}: no layer named {missing} in model '{model.name}'. "
                         f"Layers: {sorted(names)}.")
