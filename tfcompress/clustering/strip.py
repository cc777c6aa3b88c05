"""strip(): replace ClusterWeights wrappers by plain layers holding the clustered kernels."""

import keras

from tfcompress.clustering.cluster_weights import ClusterWeights
from tfcompress.factorization._surgery import replace_layers


def strip(model):
    """Returns a plain copy of `model` with every `ClusterWeights` wrapper replaced by its layer.

    The kernel of each unwrapped layer is the clustered kernel (at most `n_clusters` distinct values,
    per channel if clustering was per channel); every other weight is copied. The result has no
    tfcompress layers, so it converts to TFLite like any Keras model, and its repeated values make
    the file compress well (gzip). The given model is not modified.

    Args:
        model: A Sequential or Functional model, typically from `tfcompress.clustering.cluster`.

    Returns:
        A new `keras.Model`.

    Example:
        >>> import keras
        >>> from tfcompress.clustering import cluster, strip
        >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
        >>> plain = strip(cluster(model, n_clusters=4))
        >>> type(plain.layers[0]).__name__
        'Dense'

    References:
        Han, Mao & Dally 2016, "Deep Compression".
    """

    def make(layer):
        if isinstance(layer, ClusterWeights):
            return layer.layer.__class__.from_config(layer.layer.get_config())
        return None

    def init(old, new):
        kernel = old.clustered_kernel()
        weights = [kernel if v is old.layer.kernel else keras.ops.convert_to_numpy(v)
                   for v in old.layer.weights]
        new.set_weights(weights)

    return replace_layers(model, make, init, "strip")


def has_clusters(model):
    """True if `model` (or a nested model) holds a `ClusterWeights` wrapper."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, ClusterWeights) or (isinstance(layer, keras.Model) and has_clusters(layer)):
            return True
    return False
