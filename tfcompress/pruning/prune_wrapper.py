"""The Keras wrapper that holds the pruning masks of one layer."""

import keras
from keras import ops

from tfcompress.pruning._layouts import prunable_weights
from tfcompress.pruning.polynomial_decay import PolynomialDecay
from tfcompress.pruning.pruning_pattern import PruningPattern
from tfcompress.pruning.pruning_schedule import PruningSchedule
from tfcompress.pruning.unstructured import Unstructured

CRITERIA = ("magnitude", "taylor")


def _deserialize(obj, base, name):
    if isinstance(obj, dict):
        obj = keras.saving.deserialize_keras_object(obj)
    if not isinstance(obj, base):
        raise TypeError(f"{name} must be a {base.__name__} instance, got {obj!r}.")
    return obj


def _replica_sum(x):
    """Sum of `x` over the replicas of a `tf.distribute` strategy (one replica: `x`).

    Under (MultiWorker)MirroredStrategy each replica's gradient is its share of the global one
    (Keras scales each replica's loss by 1 / replicas), so the Taylor score |w * g| of the global
    gradient, as on one device, needs the sum before the absolute value, not after.
    """
    if keras.backend.backend() != "tensorflow":
        return x
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)


@keras.saving.register_keras_serializable(package="tfcompress")
class PruneWrapper(keras.layers.Wrapper):
    """Wraps a layer and multiplies each prunable weight by a non-trainable 0/1 mask in `call`.

    The wrapper holds one mask variable per pruned weight, a `pruning_step` counter (advanced
    inside the compiled train step, so it is saved and restored with the model) and, for the
    `"taylor"` criterion, an importance accumulator per weight. Masks are recomputed by
    `PruningCallback` outside the compiled train step, every `schedule.frequency` steps; in the
    graph pruning costs one multiply per weight. Usually created by `prune`, not by hand.

    Args:
        layer: The layer to prune (Dense, Conv1D/2D/3D, DepthwiseConv, SeparableConv,
            ConvTranspose, Embedding, EinsumDense or MultiHeadAttention).
        schedule: A `PruningSchedule`. Defaults to `PolynomialDecay()`.
        pattern: A `PruningPattern`. Defaults to `Unstructured()`.
        criterion: `"magnitude"` (|w|) or `"taylor"` (|w * dL/dw| accumulated over the batches
            since the last mask update). Defaults to "magnitude".
        channel_group: For `Channels()`: name of the group of layers whose output channels are
            pruned jointly (set by `prune`). Defaults to None (the layer alone).
        input_channel_group: For `Channels()`: name of the group whose pruned channels are this
            layer's input channels, masked too so they can be removed exactly. Defaults to None.
        scope: `"global"` ranks this layer's weights together with every other global-scope
            wrapper of the model; `"layer"` prunes each weight to the schedule's sparsity.
            Defaults to "layer".
        prune_output: Whether this layer's own output channels/weights are pruned (False for a
            layer only masked on its inputs). Defaults to True.
        **kwargs: Forwarded to `keras.layers.Wrapper`.

    Example:
        >>> import keras
        >>> from tfcompress.pruning import PruneWrapper, ConstantSparsity
        >>> wrapped = PruneWrapper(keras.layers.Dense(4), schedule=ConstantSparsity(0.5))
        >>> y = wrapped(keras.ops.ones((1, 8)))
        >>> [w.name for w in wrapped.non_trainable_weights]
        ['kernel_mask', 'pruning_step']

    References:
        Zhu & Gupta 2017, "To prune, or not to prune" (masking during training);
        Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning" (Taylor criterion).
    """

    def __init__(self, layer, schedule=None, pattern=None, criterion="magnitude", channel_group=None,
                 input_channel_group=None, prune_output=True, scope="layer", **kwargs):
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"PruneWrapper wraps a keras.layers.Layer, got {type(layer).__name__}.")
        super().__init__(layer, **kwargs)
        self.schedule = _deserialize(schedule if schedule is not None else PolynomialDecay(),
                                     PruningSchedule, "schedule")
        self.pattern = _deserialize(pattern if pattern is not None else Unstructured(),
                                    PruningPattern, "pattern")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
        self.criterion = criterion
        self.channel_group = channel_group
        self.input_channel_group = input_channel_group
        self.prune_output = prune_output
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}.")
        self.scope = scope
        self.callback_attached = False  # set by PruningCallback; checked when the train step is traced
        self.pruned = []  # list of (name, variable, spec, mask, importance)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._build_masks()

    def _build_masks(self):
        if self.built:
            return
        weights = prunable_weights(self.layer)
        if not weights:
            raise ValueError(f"Layer '{self.layer.name}' ({type(self.layer).__name__}) has no prunable "
                             "weight; wrap Dense, Conv, DepthwiseConv, SeparableConv, ConvTranspose, "
                             "Embedding, EinsumDense or MultiHeadAttention layers.")
        self.pruned = []
        for name, var, spec in weights:
            mask = self.add_weight(name=f"{name}_mask", shape=var.shape, initializer="ones",
                                   trainable=False, dtype=var.dtype)
            imp = None
            if self.criterion == "taylor":
                # only_first_replica: every replica adds the same all-reduced |w * g| (see _taylor_probe)
                imp = self.add_weight(name=f"{name}_importance", shape=var.shape, initializer="zeros",
                                      trainable=False, dtype=var.dtype, aggregation="only_first_replica")
            self.pruned.append((name, var, spec, mask, imp))
        self.pruning_step = self.add_weight(name="pruning_step", shape=(), initializer="zeros",
                                            dtype="int64", trainable=False,
                                            aggregation="only_first_replica")
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config()

    def build_from_config(self, config):
        if config and not self.layer.built:
            self.layer.build_from_config(config)
        self._build_masks()

    def _taylor_probe(self, imp):
        @ops.custom_gradient
        def probe(w):
            def grad(*args, upstream=None):
                g = upstream if upstream is not None else args[0]
                imp.assign_add(ops.abs(_replica_sum(w * g)))
                return g
            return w, grad
        return probe

    def call(self, inputs, *args, training=None, **kwargs):
        if training and not self.callback_attached:
            raise RuntimeError(
                f"Layer '{self.name}' is being trained without tfcompress.pruning.PruningCallback, so "
                "its masks would never be updated. Add it: model.fit(..., callbacks=["
                "tfcompress.pruning.PruningCallback()]). In a custom training loop call the "
                "callback's set_model/on_train_begin/on_train_batch_begin yourself.")
        mapping = []
        for _, var, _, mask, imp in self.pruned:
            value = var * mask
            if training and imp is not None:
                value = self._taylor_probe(imp)(value)
            mapping.append((var, value))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = self.layer(inputs, *args, **kwargs)
        for var in self.layer.non_trainable_variables:  # e.g. dropout seed state inside MHA
            new = scope.get_current_value(var)
            if new is not None:
                var.assign(new)
        if training:
            self.pruning_step.assign_add(1)
        return outputs

    def unwrap(self):
        """The wrapped layer as a new plain layer, its masks multiplied into the weights.

        The wrapper protocol of `tfcompress.strip`: every tfcompress training wrapper has an
        `unwrap()` returning a new, built, standard layer.

        Returns:
            A new `keras.layers.Layer` of the wrapped class, same config, masked weights.

        Example:
            >>> import keras
            >>> from tfcompress.pruning import PruneWrapper, ConstantSparsity
            >>> w = PruneWrapper(keras.layers.Dense(4), schedule=ConstantSparsity(0.5))
            >>> _ = w(keras.ops.ones((1, 8)))
            >>> type(w.unwrap()).__name__
            'Dense'
        """
        from tfcompress._surgery import copy_layer

        masks = {id(var): mvar.numpy() for _, var, _, mvar, _ in self.pruned}
        weights = [v.numpy() * masks[id(v)] if id(v) in masks else v.numpy() for v in self.layer.weights]
        return copy_layer(self.layer, weights)

    def get_config(self):
        return {
            **super().get_config(),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "pattern": keras.saving.serialize_keras_object(self.pattern),
            "criterion": self.criterion,
            "channel_group": self.channel_group,
            "input_channel_group": self.input_channel_group,
            "prune_output": self.prune_output,
            "scope": self.scope,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
