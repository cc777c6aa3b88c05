"""FactorizedDense: a Dense layer whose kernel is the product of two thin matrices."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tfcompress")
class FactorizedDense(keras.layers.Layer):
    """A Dense layer with a rank-`rank` kernel: `activation(x @ u @ v + bias)`.

    The `(in, units)` kernel of a Dense layer is replaced by `u` of shape `(in, rank)` and `v` of shape
    `(rank, units)`, so the layer holds `rank * (in + units)` weights instead of `in * units` and
    costs as many multiply-adds per input row. It lowers to two plain TFLite FULLY_CONNECTED ops.
    `FactorizedDense.from_dense` (or `tfcompress.factorization.factorize`) initialises `u` and `v`
    from the truncated SVD of a trained kernel, which is the best rank-`rank` approximation in the
    Frobenius norm (Eckart-Young).

    Args:
        units: Output size. Must be positive.
        rank: Inner size of the factorization, at least 1.
        activation: Activation applied to the output. Defaults to None (linear).
        use_bias: Whether to add a bias. Defaults to True.
        kernel_initializer: Initializer of `u` and `v` when trained from scratch.
            Defaults to "glorot_uniform".
        bias_initializer: Initializer of the bias. Defaults to "zeros".
        **kwargs: Forwarded to `keras.layers.Layer` (name, dtype, ...).

    Example:
        >>> import keras, numpy as np
        >>> from tfcompress.factorization import FactorizedDense
        >>> layer = FactorizedDense(10, rank=4)
        >>> tuple(layer(np.zeros((2, 32), "float32")).shape)
        (2, 10)
        >>> layer.count_params()  # 4 * (32 + 10) + 10, vs 330 for Dense(10)
        178

    References:
        Denton et al. 2014, "Exploiting Linear Structure Within Convolutional Networks for
        Efficient Evaluation"; Sainath et al. 2013, "Low-rank matrix factorization for deep neural
        network training with high-dimensional output targets".
    """

    def __init__(self, units, rank, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if int(units) != units or units < 1:
            raise ValueError(f"FactorizedDense: units must be a positive integer, got {units!r}.")
        if int(rank) != rank or rank < 1:
            raise ValueError(f"FactorizedDense: rank must be a positive integer, got {rank!r}.")
        self.units = int(units)
        self.rank = int(rank)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        self.u = self.add_weight(name="u", shape=(in_dim, self.rank),
                                 initializer=self.kernel_initializer)
        self.v = self.add_weight(name="v", shape=(self.rank, self.units),
                                 initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def call(self, inputs):
        y = keras.ops.matmul(keras.ops.matmul(inputs, self.u), self.v)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "rank": self.rank,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @staticmethod
    def svd_factors(kernel, rank):
        """Returns `(u, v)` with `u @ v` the best rank-`rank` approximation of `kernel` (numpy)."""
        left, s, right = np.linalg.svd(np.asarray(kernel, dtype="float64"), full_matrices=False)
        root = np.sqrt(s[:rank])
        return (left[:, :rank] * root).astype("float32"), (root[:, None] * right[:rank]).astype("float32")

    @classmethod
    def from_dense(cls, layer, rank, name=None):
        """Builds a FactorizedDense initialised from the truncated SVD of a built Dense layer.

        Args:
            layer: A built `keras.layers.Dense`.
            rank: Rank to keep.
            name: Name of the new layer. Defaults to the Dense layer's name.

        Example:
            >>> import keras, numpy as np
            >>> dense = keras.layers.Dense(8)
            >>> _ = dense(np.ones((1, 16), "float32"))
            >>> FactorizedDense.from_dense(dense, rank=8).rank
            8
        """
        if not isinstance(layer, keras.layers.Dense) or not layer.built:
            raise ValueError(f"from_dense expects a built keras.layers.Dense, got {layer!r}.")
        new = cls(layer.units, rank, activation=layer.activation, use_bias=layer.use_bias,
                  name=name or layer.name, dtype=layer.dtype_policy)
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        new.build((None, kernel.shape[0]))
        u, v = cls.svd_factors(kernel, rank)
        new.u.assign(u)
        new.v.assign(v)
        if layer.use_bias:
            new.bias.assign(keras.ops.convert_to_numpy(layer.bias))
        return new
