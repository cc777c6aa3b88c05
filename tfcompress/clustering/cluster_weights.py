"""ClusterWeights: a wrapper whose kernel is shared among n trainable centroids."""

import keras
import numpy as np

from tfcompress.clustering._kmeans import INITS, kmeans_1d


@keras.saving.register_keras_serializable(package="tfcompress")
class ClusterWeights(keras.layers.Wrapper):
    """Trains a layer's kernel as `n_clusters` shared values (weight sharing, Han et al. 2016).

    Every kernel entry points (through a fixed integer index) to one of `n_clusters` centroids, and
    the layer runs with `kernel = centroids[indices]`. Gradients of all entries sharing a centroid
    add up on that centroid, so training moves the shared values while the assignment stays the
    one k-means gave at wrapping time (as in the paper). The wrapped layer runs unchanged through
    `Layer.stateless_call`, so any layer with a `kernel` works (Dense, Conv2D, DepthwiseConv2D's
    `kernel`, ...). `tfcompress.clustering.strip` turns the wrapper back into the plain layer.

    Args:
        layer: The layer to wrap; must have a `kernel` weight (built or not).
        n_clusters: Number of shared values per kernel (or per output channel), >= 2. Defaults to 16.
        init: Initial centroids before k-means: "kmeans++", "linear" (evenly spaced between min and
            max) or "density" (evenly spaced quantiles). Defaults to "kmeans++".
        per_channel: One set of `n_clusters` centroids per output channel (last kernel axis) instead
            of one for the whole kernel. Defaults to False.
        preserve_zeros: Reserve one centroid fixed at exactly 0 for the kernel's zero entries
            (pruned weights stay pruned); the other `n_clusters - 1` share the non-zeros.
            Defaults to False.
        **kwargs: Forwarded to `keras.layers.Wrapper`.

    Example:
        >>> import keras, numpy as np
        >>> from tfcompress.clustering import ClusterWeights
        >>> layer = ClusterWeights(keras.layers.Dense(4), n_clusters=3)
        >>> y = layer(np.ones((2, 8), "float32"))
        >>> len(np.unique(layer.clustered_kernel())) <= 3
        True

    References:
        Han, Mao & Dally 2016, "Deep Compression: Compressing Deep Neural Networks with Pruning,
        Trained Quantization and Huffman Coding".
    """

    def __init__(self, layer, n_clusters=16, init="kmeans++", per_channel=False, preserve_zeros=False,
                 **kwargs):
        super().__init__(layer, **kwargs)
        if int(n_clusters) != n_clusters or n_clusters < 2:
            raise ValueError(f"ClusterWeights: n_clusters must be an integer >= 2, got {n_clusters!r}.")
        if init not in INITS:
            raise ValueError(f"ClusterWeights: init must be one of {INITS}, got {init!r}.")
        self.n_clusters = int(n_clusters)
        self.init = init
        self.per_channel = bool(per_channel)
        self.preserve_zeros = bool(preserve_zeros)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not hasattr(self.layer, "kernel"):
            raise ValueError(
                f"ClusterWeights: layer '{self.layer.name}' ({type(self.layer).__name__}) has no "
                "`kernel` weight to cluster. Wrap only layers with a kernel (Dense, Conv2D, ...).")
        shape = tuple(self.layer.kernel.shape)
        rows = shape[-1] if self.per_channel else 1
        self.centroids = self.add_weight(name="centroids", shape=(rows, self.n_clusters),
                                         initializer="zeros", trainable=True)
        self.indices = self.add_weight(name="indices", shape=(rows, int(np.prod(shape)) // rows),
                                       initializer="zeros", dtype="int32", trainable=False)
        # The shared centroids are what trains; the original kernel only feeds k-means and strip.
        self.layer.kernel.trainable = False
        super().build(input_shape)
        self.init_clusters()

    def init_clusters(self):
        """Runs k-means on the wrapped layer's current kernel and sets centroids and indices."""
        kernel = keras.ops.convert_to_numpy(self.layer.kernel)
        rows = self.centroids.shape[0]
        flat = kernel.reshape(-1, rows).T if self.per_channel else kernel.reshape(1, -1)
        centroids = np.zeros((rows, self.n_clusters), "float32")
        indices = np.zeros(flat.shape, "int32")
        for i, values in enumerate(flat):
            if self.preserve_zeros:
                nonzero = values != 0
                c, idx = kmeans_1d(values[nonzero], self.n_clusters - 1, self.init, seed=i)
                centroids[i, 1:] = c
                indices[i, nonzero] = idx + 1  # index 0 is the fixed zero centroid
            else:
                centroids[i], indices[i] = kmeans_1d(values, self.n_clusters, self.init, seed=i)
        self.centroids.assign(centroids)
        self.indices.assign(indices)

    def _kernel(self):
        centroids = self.centroids
        if self.preserve_zeros:
            mask = np.ones((1, self.n_clusters), "float32")
            mask[0, 0] = 0.0
            centroids = centroids * mask
        values = keras.ops.take_along_axis(centroids, self.indices, axis=1)
        shape = tuple(self.layer.kernel.shape)
        if self.per_channel:
            return keras.ops.reshape(keras.ops.transpose(values), shape)
        return keras.ops.reshape(values, shape)

    def clustered_kernel(self):
        """The kernel the layer computes with (numpy), at most `n_clusters` distinct values."""
        return keras.ops.convert_to_numpy(self._kernel())

    def call(self, inputs, *args, **kwargs):
        kernel = self._kernel()
        trainable = [kernel if v is self.layer.kernel else v for v in self.layer.trainable_variables]
        non_trainable = list(self.layer.non_trainable_variables)
        if any(v is self.layer.kernel for v in non_trainable):
            non_trainable = [kernel if v is self.layer.kernel else v for v in non_trainable]
        outputs, _ = self.layer.stateless_call(trainable, non_trainable, inputs, *args, **kwargs)
        return outputs

    def unwrap(self):
        """The wrapped layer as a new plain layer whose kernel is the clustered kernel.

        The wrapper protocol of `tfcompress.strip`.

        Returns:
            A new, built `keras.layers.Layer` of the wrapped class (every other weight copied).

        Example:
            >>> import keras, numpy as np
            >>> from tfcompress.clustering import ClusterWeights
            >>> w = ClusterWeights(keras.layers.Dense(4), n_clusters=3)
            >>> _ = w(np.ones((2, 8), "float32"))
            >>> len(np.unique(w.unwrap().kernel.numpy())) <= 3
            True
        """
        from tfcompress._surgery import copy_layer

        kernel = self.clustered_kernel()
        return copy_layer(self.layer, [kernel if v is self.layer.kernel else keras.ops.convert_to_numpy(v)
                                       for v in self.layer.weights])

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "n_clusters": self.n_clusters, "init": self.init,
                "per_channel": self.per_channel, "preserve_zeros": self.preserve_zeros}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.layers.deserialize(config["layer"])
        return cls(**config)
