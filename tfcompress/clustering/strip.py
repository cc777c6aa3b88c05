"""strip(): replace ClusterWeights wrappers by plain layers holding the clustered kernels."""

from tfcompress.clustering.cluster_weights import ClusterWeights


def strip(model):
    """Returns a plain copy of `model` with every `ClusterWeights` wrapper replaced by its layer.

    The kernel of each unwrapped layer is the clustered kernel (at most `n_clusters` distinct values,
    per channel if clustering was per channel); every other weight is copied. The result has no
    tfcompress layers, so it converts to TFLite like any Keras model, and its repeated values make
    the file compress well (gzip). The given model is not modified.

    Args:
        model: A built `keras.Model`, typically from `tfcompress.clustering.cluster`.

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

    from tfcompress._surgery import check_model, rebuild

    check_model(model, "strip")
    return rebuild(model, lambda layer: layer.unwrap() if isinstance(layer, ClusterWeights) else None)


def has_clusters(model):
    """True if `model` (or a nested model) holds a `ClusterWeights` wrapper."""
    from tfcompress._surgery import find_layers

    return bool(find_layers(model, lambda layer: isinstance(layer, ClusterWeights)))
