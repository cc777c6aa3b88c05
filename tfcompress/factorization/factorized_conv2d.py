"""FactorizedConv2D: a KxK convolution split into a Kx1 and a 1xK convolution (spatial SVD)."""

import keras
import numpy as np

from tfcompress.factorization.factorized_dense import FactorizedDense


@keras.saving.register_keras_serializable(package="tfcompress")
class FactorizedConv2D(keras.layers.Layer):
    """A Conv2D computed as a `(kh, 1)` convolution to `rank` channels then a `(1, kw)` one.

    The decomposition is the spatial SVD of Jaderberg et al. 2014 (their "scheme 2"): the
    `(kh, kw, c_in, c_out)` kernel is read as a `(kh * c_in, kw * c_out)` matrix `M`, and a rank-`r`
    factorization `M = A @ B` gives a vertical `(kh, 1, c_in, r)` kernel and a horizontal
    `(1, kw, r, c_out)` kernel. Weights drop from `kh*kw*c_in*c_out` to `r*(kh*c_in + kw*c_out)`.

    Why spatial SVD rather than Tucker-2 (1x1 -> kxk -> 1x1): the truncated SVD of `M` is the exact
    best rank-`r` approximation of the whole kernel (Eckart-Young), so `factorize` starts fine-tuning
    from a provably optimal point and its error is the closed-form tail of singular values; truncated
    Tucker-2 (HOSVD) is only quasi-optimal and needs iterative refinement. The two convolutions act on
    separate axes, so for any strides, dilations and "valid"/"same" padding the pair computes exactly
    the original convolution at full rank. Both lower to plain TFLite CONV_2D ops (XNNPACK, GPU and
    Edge TPU all run them); a 1x1 kernel reduces to the matrix SVD of a Dense layer.

    Args:
        filters: Number of output channels.
        kernel_size: int or `(kh, kw)`.
        rank: Channels between the two convolutions, at least 1.
        strides: int or `(sh, sw)`. Defaults to 1.
        padding: "valid" or "same". Defaults to "valid".
        dilation_rate: int or `(dh, dw)`. Defaults to 1.
        activation: Activation of the output. Defaults to None.
        use_bias: Whether to add a bias after the second convolution. Defaults to True.
        kernel_initializer: Initializer of both kernels. Defaults to "glorot_uniform".
        bias_initializer: Defaults to "zeros".
        **kwargs: Forwarded to `keras.layers.Layer`.

    Example:
        >>> import numpy as np
        >>> from tfcompress.factorization import FactorizedConv2D
        >>> layer = FactorizedConv2D(16, 3, rank=4, padding="same")
        >>> tuple(layer(np.zeros((1, 8, 8, 8), "float32")).shape)
        (1, 8, 8, 16)

    References:
        Jaderberg, Vedaldi & Zisserman 2014, "Speeding up Convolutional Neural Networks with Low
        Rank Expansions"; Tai et al. 2016, "Convolutional neural networks with low-rank
        regularization".
    """

    def __init__(self, filters, kernel_size, rank, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if int(filters) != filters or filters < 1:
            raise ValueError(f"FactorizedConv2D: filters must be a positive integer, got {filters!r}.")
        if int(rank) != rank or rank < 1:
            raise ValueError(f"FactorizedConv2D: rank must be a positive integer, got {rank!r}.")
        if padding not in ("valid", "same"):
            raise ValueError(f"FactorizedConv2D: padding must be 'valid' or 'same', got {padding!r}.")
        pair = lambda v: (int(v), int(v)) if np.isscalar(v) else tuple(int(i) for i in v)  # noqa: E731
        self.filters = int(filters)
        self.kernel_size = pair(kernel_size)
        self.rank = int(rank)
        self.strides = pair(strides)
        self.padding = padding
        self.dilation_rate = pair(dilation_rate)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        kh, kw = self.kernel_size
        c_in = input_shape[-1]
        self.vertical_kernel = self.add_weight(
            name="vertical_kernel", shape=(kh, 1, c_in, self.rank), initializer=self.kernel_initializer)
        self.horizontal_kernel = self.add_weight(
            name="horizontal_kernel", shape=(1, kw, self.rank, self.filters),
            initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def call(self, inputs):
        (sh, sw), (dh, dw) = self.strides, self.dilation_rate
        y = keras.ops.conv(inputs, self.vertical_kernel, strides=(sh, 1), padding=self.padding,
                           dilation_rate=(dh, 1))
        y = keras.ops.conv(y, self.horizontal_kernel, strides=(1, sw), padding=self.padding,
                           dilation_rate=(1, dw))
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        dims = []
        for size, k, s, d in zip(input_shape[1:3], self.kernel_size, self.strides, self.dilation_rate):
            if size is None:
                dims.append(None)
            elif self.padding == "same":
                dims.append(-(-size // s))
            else:
                dims.append((size - d * (k - 1) - 1) // s + 1)
        return (input_shape[0], *dims, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "rank": self.rank,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @staticmethod
    def kernel_matrix(kernel):
        """Reads a `(kh, kw, c_in, c_out)` kernel as the `(kh * c_in, kw * c_out)` matrix it factorizes."""
        kh, kw, c_in, c_out = kernel.shape
        return np.transpose(kernel, (0, 2, 1, 3)).reshape(kh * c_in, kw * c_out)

    @staticmethod
    def svd_factors(kernel, rank):
        """Returns `(vertical, horizontal)` kernels of the best rank-`rank` spatial SVD (numpy)."""
        kh, kw, c_in, c_out = kernel.shape
        u, v = FactorizedDense.svd_factors(FactorizedConv2D.kernel_matrix(np.asarray(kernel)), rank)
        a = u.reshape(kh, c_in, rank)[:, None]  # (kh, 1, c_in, r)
        b = v.reshape(rank, kw, c_out).transpose(1, 0, 2)[None]  # (1, kw, r, c_out)
        return a, b

    @classmethod
    def from_conv2d(cls, layer, rank, name=None):
        """Builds a FactorizedConv2D initialised from the truncated spatial SVD of a built Conv2D.

        Args:
            layer: A built `keras.layers.Conv2D` with `groups=1` and channels_last data.
            rank: Rank to keep.
            name: Name of the new layer. Defaults to the Conv2D layer's name.

        Example:
            >>> import keras, numpy as np
            >>> conv = keras.layers.Conv2D(8, 3)
            >>> _ = conv(np.ones((1, 6, 6, 4), "float32"))
            >>> FactorizedConv2D.from_conv2d(conv, rank=2).rank
            2
        """
        if type(layer) is not keras.layers.Conv2D or not layer.built:
            raise ValueError(f"from_conv2d expects a built keras.layers.Conv2D, got {layer!r}.")
        if layer.groups != 1 or layer.data_format != "channels_last":
            raise ValueError(
                f"from_conv2d: layer '{layer.name}' has groups={layer.groups}, "
                f"data_format={layer.data_format!r}; only groups=1 and channels_last are supported.")
        if layer.padding not in ("valid", "same"):
            raise ValueError(f"from_conv2d: layer '{layer.name}' has padding={layer.padding!r}; "
                             "only 'valid' and 'same' are supported.")
        new = cls(layer.filters, layer.kernel_size, rank, strides=layer.strides, padding=layer.padding,
                  dilation_rate=layer.dilation_rate, activation=layer.activation,
                  use_bias=layer.use_bias, name=name or layer.name, dtype=layer.dtype_policy)
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        new.build((None, None, None, kernel.shape[2]))
        a, b = cls.svd_factors(kernel, rank)
        new.vertical_kernel.assign(a)
        new.horizontal_kernel.assign(b)
        if layer.use_bias:
            new.bias.assign(keras.ops.convert_to_numpy(layer.bias))
        return new
