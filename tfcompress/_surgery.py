"""The model-surgery engine every technique uses (private): walk, copy and rebuild Keras models.

One place knows how to take a Keras model apart and put a new one together:

- `iter_layers(model)`: the leaf layers of any model (Sequential, Functional, nested, subclassed).
- `copy_layer(layer, weights=None)`: a fresh built layer with the same config and weights.
- `rebuild(model, replace)`: a new model where `replace(layer)` may substitute each leaf layer.
  Sequential and Functional graphs are re-traced with their `keras.ops` nodes (`x + 3.0`,
  `ops.concatenate`, ...) kept as they are; nested models are rebuilt recursively; a subclassed
  model is re-created from its config with its layer attributes replaced as `__init__` sets them
  (see `_construct`: the layers it would have created are never tracked). Weights of kept
  layers are copied; the given model is never mutated.
- `clone_graph(model, ...)`: the low-level functional re-trace (with `call_function`) for rewrites
  that add nodes, such as quantization points.
- `strip(model)` (public as `tfcompress.strip`): unwraps every wrapper that knows how to unwrap
  itself. The wrapper protocol: a layer with a method `unwrap()` returning a new, built plain
  layer (its trained state baked into the weights) is a training wrapper; `strip` calls it.
  A layer with the class attribute `tfcompress_carries_ranges = True` holds quantization ranges
  that the converter uses as calibration (QAT fake-quant, kept by `strip`).

Nothing else in tfcompress calls `keras.models.clone_model` or walks a model's graph.
"""

import keras
from absl import logging

_L = keras.layers


def is_graph_model(model):
    """True for Sequential and Functional models (and Functional subclasses): graphs Keras re-traces."""
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and any(c.__name__ == "Functional" for c in type(model).__mro__))


def describe(obj):
    """`'name' (Class)` for error messages."""
    return f"'{getattr(obj, 'name', '?')}' ({type(obj).__name__})"


def check_model(model, what):
    """Raises a clear error unless `model` is a built keras.Model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what}() takes a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"{what}(): model {describe(model)} is not built: call it on a batch of data "
                         "(or model.build(input_shape)) first, then pass it again.")


def iter_layers(model, include_models=False):
    """Yields the leaf layers of `model` depth first, descending into nested models.

    Args:
        model: Any keras.Model (subclassed models list their tracked layers).
        include_models: Also yield each nested model before its layers. Defaults to False.
    """
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            if include_models:
                yield layer
            yield from iter_layers(layer, include_models)
        else:
            yield layer


def find_layers(model, predicate):
    """The distinct leaf layers of `model` for which `predicate(layer)` is true (shared ones once)."""
    seen, out = set(), []
    for layer in iter_layers(model):
        if id(layer) not in seen and predicate(layer):
            seen.add(id(layer))
            out.append(layer)
    return out


def check_layer_names(model, names, what):
    """Raises a ValueError naming every entry of `names` that is not a layer of `model`."""
    known = {layer.name for layer in iter_layers(model)}
    missing = sorted(set(names) - known)
    if missing:
        raise ValueError(f"{what}: no layer named {missing} in model '{model.name}'. "
                         f"Layers: {sorted(known)}.")


def copy_layer(layer, weights=None):
    """A new, built layer with the config of `layer` and its weights (or `weights`)."""
    new = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config() if layer.built else None
    if build_config:
        new.build_from_config(build_config)
    values = layer.get_weights() if weights is None else weights
    if values or new.weights:
        new.set_weights(values)
    return new


def build_like(new, old):
    """Builds layer `new` for the input shape `old` was built for (returns `new`)."""
    config = old.get_build_config() if old.built else None
    if not config or "input_shape" not in config:
        raise ValueError(f"Layer {describe(old)} has no recorded input shape: build the model (call it "
                         "on data) before rewriting it.")
    new.build(config["input_shape"])
    new.built = True
    return new


def rebuild(model, replace=None):
    """Returns a copy of `model` in which `replace(layer)` substitutes leaf layers.

    `replace(layer)` returns a new (built, weights set) layer, or None to keep a copy of `layer`
    with its weights. `keras.ops` nodes of a functional graph are not layers: they are kept as
    they are. The given model is never mutated.

    Args:
        model: A built keras.Model: Sequential, Functional, nested or subclassed.
        replace: `fn(layer) -> keras.layers.Layer | None`. Defaults to None (a plain copy).

    Returns:
        A new keras.Model.
    """
    replace = replace or (lambda layer: None)

    def fn(layer):
        if not isinstance(layer, _L.Layer):
            return layer  # a keras.ops operation node: stateless, kept as it is
        if isinstance(layer, _L.InputLayer):
            return copy_layer(layer)
        if isinstance(layer, keras.Model):
            return rebuild(layer, replace)
        new = replace(layer)
        return copy_layer(layer) if new is None else new

    if is_graph_model(model):
        return clone_graph(model, clone_function=fn)
    return _rebuild_subclassed(model, fn)


def clone_graph(model, clone_function, call_function=None, input_tensors=None):
    """Re-traces a Sequential/Functional model with `clone_function(op)` for each operation.

    The low-level step under `rebuild`, for rewrites that also change how each operation is called
    (`call_function(op, *args, **kwargs)`, e.g. to add quantization points). `clone_function` also
    receives the `keras.ops` operation nodes; return them unchanged to keep them.
    """
    kwargs = {"clone_function": clone_function}
    if call_function is not None:
        kwargs["call_function"] = call_function
    if input_tensors is not None:
        kwargs["input_tensors"] = input_tensors
    return keras.models.clone_model(model, **kwargs)


def as_functional(model):
    """A Functional model calling a built subclassed `model` on `keras.Input`s of its build shapes.

    Converters need the symbolic inputs that a subclassed model lacks; the weights are shared, the
    model is not changed. Graph models, and models without a recorded input shape, are returned
    as they are.
    """
    if is_graph_model(model) or not isinstance(model, keras.Model) or not model.built:
        return model
    config = model.get_build_config() or {}
    shape = config.get("input_shape")
    if shape is None:
        return model
    dtype = getattr(model, "input_dtype", None) or "float32"

    def make(s):
        return keras.Input(batch_shape=(None,) + tuple(s)[1:], dtype=dtype)

    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        inputs = [make(s) for s in shape]
    elif isinstance(shape, dict):
        inputs = {k: make(s) for k, s in shape.items()}
    else:
        inputs = make(shape)
    return keras.Model(inputs, model(inputs), name=model.name)


def _set_unroll(config):
    if isinstance(config, dict):
        if "unroll" in config:
            config["unroll"] = True
        for value in config.values():
            _set_unroll(value)
    elif isinstance(config, list):
        for value in config:
            _set_unroll(value)
    return config


def _is_rnn(layer):
    return isinstance(layer, _L.RNN) or (isinstance(layer, _L.Bidirectional) and isinstance(layer.forward_layer, _L.RNN))


def unroll_rnns(model):
    """A copy of `model` whose recurrent layers (also inside Bidirectional) have `unroll=True`.

    TFLite's converter cannot lower the TensorList loop of a Keras RNN; an unrolled RNN is plain
    matmuls and element-wise ops that every delegate runs. Needs a static sequence length. Returns
    `model` itself when it has no rolled RNN.
    """
    rolled = find_layers(model, lambda l: _is_rnn(l) and "false" in str(_rnn_unroll_flags(l)).lower())
    if not rolled:
        return model
    for layer in rolled:
        shape = (layer.get_build_config() or {}).get("input_shape")
        if not shape or len(shape) < 3 or shape[1] is None:
            raise ValueError(
                f"Layer {describe(layer)} runs over a sequence of unknown length (input shape {shape}). "
                "TFLite runs recurrent layers unrolled over a fixed number of steps: give the model a "
                "fixed sequence length, e.g. keras.Input(shape=(T, ...)), and pad the sequences to T.")

    logging.info("export: unrolling %s over their fixed sequence length for TFLite",
                 ", ".join(describe(l) for l in rolled))

    def replace(layer):
        if not _is_rnn(layer):
            return None
        new = layer.__class__.from_config(_set_unroll(layer.get_config()))
        build_like(new, layer)
        new.set_weights(layer.get_weights())
        return new

    return rebuild(model, replace)


def _rnn_unroll_flags(layer):
    if isinstance(layer, _L.Bidirectional):
        return [layer.forward_layer.unroll, layer.backward_layer.unroll]
    return [layer.unroll]


def _rebuild_subclassed(model, fn):
    name = describe(model)
    if not model.built:
        raise ValueError(f"Subclassed model {name} is not built: call it on a batch of data (or "
                         "model.build(input_shape)) first, then pass it again.")
    build_config = model.get_build_config()
    if not build_config:
        raise ValueError(f"Subclassed model {name} has no build config; call it on data first.")
    own = [v for v in model.weights if not any(v is w for l in iter_layers(model) for w in l.weights)]
    if own:
        raise ValueError(f"Subclassed model {name} owns variables outside its layers "
                         f"({[v.name for v in own]}); move them into a layer.")
    replacements = {}
    for attr, value in list(vars(model).items()):
        if attr.startswith("_"):
            continue
        if isinstance(value, _L.Layer):
            replacements[attr] = fn(value)
        elif _layer_list(value):
            replacements[attr] = type(value)(fn(v) for v in value)
    try:
        base, config = _original(model)
        copy, created = _construct(base, config, replacements)
    except _NotConstructed:
        raise
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"Subclassed model {name} cannot be copied from its config ({type(e).__name__}: {e}). "
            "tfcompress rebuilds subclassed models as `cls.from_config(model.get_config())`: implement "
            "get_config() returning the constructor arguments, or build the model with the "
            "Functional API.") from e
    changed = []
    for attr, old in created.items():
        new = replacements[attr]
        if isinstance(new, (list, tuple)):
            kinds = tuple(type(n) is not type(o) for n, o in zip(new, old)) + (len(new) != len(old),)
        else:
            kinds = (type(new) is not type(old),)
        if any(kinds):
            changed.append(attr)
    if changed:
        _mark_rebuilt(copy, base, config, changed)
    copy.build_from_config(build_config)
    if not copy.built:
        copy.built = True
    return copy


def _layer_list(value):
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, _L.Layer) for v in value)


class _NotConstructed(ValueError):
    pass


def _construct(base, config, replacements):
    """`(model, created)`: `base.from_config(config)` in which `__init__` is handed the replacements.

    Each public attribute named in `replacements` that `__init__` sets to a layer (or a list of
    layers) receives the replacement instead, so the layers `__init__` created are never tracked
    by the model (not in `model.layers`, not built, not saved) and the copy owns no orphan
    variables. This goes through Python's `__setattr__` of a short-lived subclass, not through
    Keras' attribute tracker (which has no public way to forget a layer). `created[attr]` is what
    `__init__` made, to tell which attributes now hold another kind of layer.
    """
    created = {}

    def __setattr__(self, attr, value):
        if attr in replacements and (isinstance(value, _L.Layer) or _layer_list(value)):
            created[attr] = value
            value = replacements[attr]
        base.__setattr__(self, attr, value)

    swap = type(base.__name__, (base,), {"__setattr__": __setattr__, "__module__": base.__module__,
                                        "__qualname__": base.__qualname__})
    model = swap.from_config(config)
    if type(model) is not swap:
        raise _NotConstructed(
            f"{base.__name__}.from_config() returned a {type(model).__name__}, not an instance of the class "
            f"it was called on. tfcompress copies subclassed models with `cls.from_config(config)`: "
            "return `cls(**config)` from from_config (as Keras' default does), or build the model with "
            "the Functional API.")
    model.__class__ = base
    return model, created


class _Record:
    """Plain holder (not tracked by Keras) of how a rebuilt subclassed model differs from its class."""

    def __init__(self, config, replaced):
        self.config, self.replaced = config, list(replaced)


def _original(model):
    """`(user class, its config)` of a subclassed model, seeing through a rebuilt one."""
    record = getattr(model, "_tfcompress_rebuilt", None)
    if isinstance(model, RebuiltModel) and record is not None:
        base = next(c for c in type(model).__mro__[1:] if c is not RebuiltModel)
        return base, record.config
    return type(model), model.get_config()


_REBUILT_CLASSES = {}


def _rebuilt_class(base):
    if base not in _REBUILT_CLASSES:
        cls = type(base.__name__, (RebuiltModel, base), {"__module__": base.__module__})
        keras.saving.register_keras_serializable(package="tfcompress", name="RebuiltModel")(cls)
        _REBUILT_CLASSES[base] = cls
    return _REBUILT_CLASSES[base]


def _mark_rebuilt(model, base, config, replaced):
    model.__class__ = _rebuilt_class(base)
    object.__setattr__(model, "_tfcompress_rebuilt", _Record(config, replaced))


@keras.saving.register_keras_serializable(package="tfcompress")
class RebuiltModel:
    """Mixin of a subclassed model whose layer attributes tfcompress replaced (private).

    A subclassed model's `get_config` describes its original layers; after `prune`, `cluster`,
    `factorize`, ... some attributes hold other layers (wrappers). The rebuilt copy is an instance
    of a subclass of the user's class (same name, `isinstance` still true) with this mixin, whose
    config adds the replaced layers, so the `.keras` file loads back with its wrappers (after
    `import tfcompress`, with the user's class registered or importable).
    """

    def get_config(self):
        record = self._tfcompress_rebuilt
        base, _ = _original(self)
        replaced = {}
        for attr in record.replaced:
            value = getattr(self, attr)
            replaced[attr] = ([keras.saving.serialize_keras_object(v) for v in value]
                              if isinstance(value, (list, tuple)) else keras.saving.serialize_keras_object(value))
        return {"base": {"module": base.__module__, "class_name": base.__name__,
                         "registered_name": keras.saving.get_registered_name(base)},
                "config": record.config, "replaced": replaced}

    @classmethod
    def from_config(cls, config):
        import importlib

        info = config["base"]
        base = keras.saving.get_registered_object(info["registered_name"])
        if base is None:
            try:
                base = getattr(importlib.import_module(info["module"]), info["class_name"])
            except (ImportError, AttributeError) as e:
                raise ValueError(
                    f"Cannot load the rebuilt model: its class '{info['class_name']}' (registered as "
                    f"'{info['registered_name']}', module '{info['module']}') is not registered or "
                    f"importable ({type(e).__name__}: {e}). Import the module that defines it, or "
                    "decorate it with @keras.saving.register_keras_serializable().") from e
        replaced = {attr: ([keras.saving.deserialize_keras_object(v) for v in value] if isinstance(value, list)
                           else keras.saving.deserialize_keras_object(value))
                    for attr, value in config["replaced"].items()}
        model, _ = _construct(base, config["config"], replaced)
        _mark_rebuilt(model, base, config["config"], config["replaced"])
        return model


def unwrap_all(model, keep=lambda layer: False):
    """`rebuild` with every wrapper following the `unwrap()` protocol unwrapped (unless `keep`)."""
    def replace(layer):
        if callable(getattr(layer, "unwrap", None)) and not keep(layer):
            return layer.unwrap()
        return None

    return rebuild(model, replace)


def has_wrappers(model):
    """True when `model` holds a layer with the `unwrap()` protocol."""
    return bool(find_layers(model, lambda l: callable(getattr(l, "unwrap", None))))


def carries_ranges(model):
    """True when `model` holds layers with quantization ranges (QAT fake-quant)."""
    return bool(find_layers(model, lambda l: getattr(l, "tfcompress_carries_ranges", False)))


def _history_names(obj, out):
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            out.append(obj["config"]["keras_history"][0])
        else:
            for v in obj.values():
                _history_names(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _history_names(v, out)
    return out


def layer_graph(model):
    """`(layers, inputs, consumers, outputs, shared)` of a flat Sequential/Functional model, by name.

    `layers` maps names to the model's operations (layers and `keras.ops` nodes), `inputs[name]`
    lists the names feeding it, `consumers[name]` the names it feeds, `outputs` the names of the
    output operations and `shared` the operations called more than once.
    """
    if isinstance(model, keras.Sequential):
        layers = {l.name: l for l in model.layers}
        names = list(layers)
        inputs = {n: ([names[i - 1]] if i else []) for i, n in enumerate(names)}
        outputs = {names[-1]}
        shared = set()
    else:
        config = model.get_config()
        layers = {op.name: op for op in model.operations}
        inputs, shared = {}, set()
        for entry in config["layers"]:
            nodes = entry.get("inbound_nodes", [])
            if len(nodes) > 1:
                shared.add(entry["name"])
            inputs[entry["name"]] = _history_names(nodes, [])
        outputs = set(_history_names(config["output_layers"], [])) if isinstance(
            config["output_layers"][0], dict) else {o[0] for o in _flat_refs(config["output_layers"])}
    consumers = {n: [] for n in inputs}
    for n, ins in inputs.items():
        for i in ins:
            consumers.setdefault(i, []).append(n)
    return layers, inputs, consumers, outputs, shared


def tensor_consumers(model):
    """`(consumers, outputs)` of a Functional model by tensor: `consumers[id(t)]` lists the operations
    reading symbolic tensor `t` (layers and `keras.ops` nodes), `outputs` the ids of the model's
    output tensors. Operations called more than once (shared layers) are left out."""
    consumers = {}
    for op in model.operations:
        try:
            inputs = keras.tree.flatten(op.input)
        except (AttributeError, ValueError):  # a shared layer has several inputs
            continue
        for t in inputs:
            consumers.setdefault(id(t), []).append(op)
    return consumers, {id(t) for t in keras.tree.flatten(model.outputs)}


def _flat_refs(refs):
    if isinstance(refs, (list, tuple)) and refs and isinstance(refs[0], str):
        return [refs]
    out = []
    for r in refs:
        out.extend(_flat_refs(r))
    return out
