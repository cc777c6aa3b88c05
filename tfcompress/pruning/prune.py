"""prune(): wrap the prunable layers of a model in PruneWrapper."""

import keras
from absl import logging

from tfcompress._surgery import copy_layer, iter_layers, rebuild
from tfcompress.pruning._channel_graph import channel_groups
from tfcompress.pruning._layouts import CONV_T, DEPTHWISE, is_prunable_type, prunable_weights
from tfcompress.pruning.channels import Channels
from tfcompress.pruning.prune_wrapper import CRITERIA, PruneWrapper
from tfcompress.pruning.pruning_pattern import PruningPattern
from tfcompress.pruning.pruning_schedule import PruningSchedule
from tfcompress.pruning.unstructured import Unstructured


def _selector(layers, all_layers):
    if layers is None:
        return lambda layer: True
    if callable(layers) and not isinstance(layers, type):
        return layers
    items = layers if isinstance(layers, (list, tuple, set)) else [layers]
    names = {l.name for l in all_layers}
    for item in items:
        if isinstance(item, str) and item not in names:
            raise ValueError(f"layers= names '{item}', which is not a layer of the model. "
                             f"Layers: {sorted(names)}.")
        if not isinstance(item, (str, type)):
            raise TypeError("layers= takes None, a predicate `f(layer) -> bool`, or a list of layer "
                            f"names and layer classes; got {item!r}.")
    return lambda layer: any(layer.name == i if isinstance(i, str) else isinstance(layer, i)
                             for i in items)


def _schedule_for(schedule, all_layers):
    if isinstance(schedule, PruningSchedule):
        return lambda layer: schedule
    if isinstance(schedule, dict):
        names = {l.name for l in all_layers}
        for key, value in schedule.items():
            if key not in names:
                raise ValueError(f"schedule dict has key '{key}', which is not a layer of the model. "
                                 f"Layers: {sorted(names)}.")
            if not isinstance(value, PruningSchedule):
                raise TypeError(f"schedule['{key}'] must be a PruningSchedule, got {value!r}.")
        return lambda layer: schedule.get(layer.name)
    if callable(schedule):
        def fn(layer):
            s = schedule(layer)
            if s is not None and not isinstance(s, PruningSchedule):
                raise TypeError(f"schedule({layer.name!r}) returned {s!r}; return a PruningSchedule "
                                "or None (leave the layer dense).")
            return s
        return fn
    raise TypeError("schedule must be a PruningSchedule (e.g. PolynomialDecay(0.0, 0.8, 0, 1000)), a "
                    f"dict {{layer_name: PruningSchedule}} or a callable layer -> schedule; got {schedule!r}.")


def prune(model, *, schedule, pattern=None, criterion="magnitude", layers=None, scope="layer"):
    """Returns a copy of `model` whose prunable layers are wrapped in `PruneWrapper`.

    Prunable: Dense, EinsumDense, Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D,
    Conv1D/2D/3DTranspose, Embedding, the query/key/value/output kernels of MultiHeadAttention,
    the kernel and recurrent_kernel of LSTM / GRU / SimpleRNN (also inside Bidirectional), and any
    custom layer that declares its prunable weights with a method
    `tfcompress_prunable_weights(self) -> list of variables` (the last axis of each is its output
    axis), e.g. `def tfcompress_prunable_weights(self): return [self.kernel]`. Works on Sequential, Functional (residual, multi-input/output) and nested
    models (cloned with `keras.models.clone_model`), and on subclassed models (re-created with
    `cls.from_config(model.get_config())`, then their layer attributes are wrapped; such a model
    must implement `get_config`). The given model is never modified; weights are copied. Layers
    that cannot be pruned are left alone and listed in `pruned_model.unpruned_layers`
    (`{name: reason}`).

    Train the result with `PruningCallback` in `fit`; then `strip` (or `shrink` for `Channels()`).

    Args:
        model: A built `keras.Model`.
        schedule: A `PruningSchedule`, or per-layer targets: a dict `{layer_name: schedule}` (other
            layers stay dense) or a callable `layer -> schedule or None`.
        pattern: `Unstructured()`, `Block((1, 4))`, `NofM(2, 4)` or `Channels()`.
            Defaults to `Unstructured()`.
        criterion: `"magnitude"` or `"taylor"` (first-order Taylor, |w * dL/dw| accumulated over
            the batches between mask updates). Defaults to "magnitude".
        layers: Which layers to prune: None (all prunable), a list of names and/or layer classes,
            or a predicate `layer -> bool`. Defaults to None.
        scope: `"layer"` (every layer reaches the schedule's sparsity) or `"global"` (weights of all
            layers ranked together, so sparsity differs per layer and averages to the target).
            Defaults to "layer".

    Returns:
        A new `keras.Model` with `PruneWrapper` layers.

    Example:
        >>> import keras
        >>> from tfcompress.pruning import prune, PolynomialDecay
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> pruned = prune(model, schedule=PolynomialDecay(0.0, 0.8, 0, 100))
        >>> type(pruned.layers[0]).__name__
        'PruneWrapper'

    References:
        Zhu & Gupta 2017, "To prune, or not to prune" (arXiv:1710.01878); Molchanov et al. 2019,
        "Importance Estimation for Neural Network Pruning" (Taylor criterion).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"prune() takes a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built: call it on data or model.build(input_shape) "
                         "before pruning.")
    pattern = Unstructured() if pattern is None else pattern
    if not isinstance(pattern, PruningPattern):
        raise TypeError("pattern must be Unstructured(), Block((1, 4)), NofM(2, 4) or Channels(); "
                        f"got {pattern!r}.")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}.")
    if scope == "global" and not isinstance(schedule, PruningSchedule):
        raise ValueError("scope='global' ranks all layers against one target: pass a single "
                         "PruningSchedule, not per-layer targets.")
    if scope == "global" and isinstance(pattern, Channels):
        raise ValueError("scope='global' is not supported with Channels(); use scope='layer'.")
    if any(isinstance(l, PruneWrapper) for l in iter_layers(model)):
        raise ValueError(f"Model '{model.name}' is already pruned (it holds PruneWrapper layers); "
                         "strip() it first or keep training it.")
    all_layers = list(iter_layers(model, include_models=True))
    selected = _selector(layers, all_layers)
    schedule_of = _schedule_for(schedule, all_layers)
    unpruned = {}

    channel_role = {}
    if isinstance(pattern, Channels):
        def producer_ok(layer):
            return selected(layer) and schedule_of(layer) is not None
        groups, blocked = channel_groups(model, producer_ok)
        for g in groups:
            for p in g["producers"]:
                channel_role.setdefault(p, {})["out"] = g["id"]
            for c, _ in g["consumers"]:
                channel_role.setdefault(c, {})["in"] = g["id"]
        for name, reason in blocked.items():
            if reason != "not selected":
                unpruned[name] = f"Channels(): output channels kept, {reason}"

    def make_layer(layer):
        new = copy_layer(layer)
        if isinstance(layer, keras.layers.InputLayer):
            return new
        if not (selected(layer) or layer.name in channel_role):
            return new
        if not is_prunable_type(layer) or not prunable_weights(layer):
            if selected(layer) and layers is not None:
                unpruned[layer.name] = f"{type(layer).__name__} has no prunable weights"
            elif selected(layer) and layer.weights:
                unpruned[layer.name] = f"{type(layer).__name__} is not a prunable layer type"
            return new
        if layer.name in unpruned and layer.name not in channel_role:
            return new
        kwargs = {}
        if isinstance(pattern, Channels):
            role = channel_role.get(layer.name)
            if role is None:
                if isinstance(layer, DEPTHWISE):
                    pass  # follows the channels of the layer before it
                elif layer.name not in unpruned:
                    unpruned[layer.name] = (f"Channels(): {type(layer).__name__} channels cannot be "
                                            "removed" if isinstance(layer, CONV_T + DEPTHWISE)
                                            else "Channels(): not selected")
                return new
            kwargs = {"channel_group": role.get("out"), "input_channel_group": role.get("in"),
                      "prune_output": "out" in role}
        layer_schedule = schedule_of(layer)
        if layer_schedule is None and not (kwargs and not kwargs["prune_output"]):
            return new
        if layer_schedule is None:  # consumer-only: follows its input group's schedule
            layer_schedule = schedule if isinstance(schedule, PruningSchedule) else None
            if layer_schedule is None:
                return new
        wrapper = PruneWrapper(new, schedule=layer_schedule, pattern=pattern, criterion=criterion,
                               scope=scope, name=f"prune_{layer.name}", **kwargs)
        wrapper.build()
        return wrapper

    pruned = rebuild(model, make_layer)
    if not any(isinstance(l, PruneWrapper) for l in iter_layers(pruned)):
        raise ValueError(f"prune() found nothing to prune in '{model.name}' (unpruned: {unpruned}). "
                         "Check layers= and the schedule keys.")
    pruned.unpruned_layers = dict(unpruned)
    wrapped = [l.layer.name for l in iter_layers(pruned) if isinstance(l, PruneWrapper)]
    logging.info("prune: %d layers wrapped (%s); left dense: %s", len(wrapped), ", ".join(wrapped),
                 unpruned or "none")
    return pruned
