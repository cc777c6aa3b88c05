"""cluster(): wrap the kernels of a trained model for weight-sharing training."""

import keras
import numpy as np
from absl import logging

from tfcompress.clustering._kmeans import INITS
from tfcompress.clustering.cluster_weights import ClusterWeights
from tfcompress._surgery import build_like, check_layer_names, check_model, copy_layer, iter_layers, rebuild

CLUSTERABLE = ("Dense", "Conv2D", "DepthwiseConv2D", "Conv1D", "Conv2DTranspose", "FactorizedDense")


def cluster(model, n_clusters=16, init="kmeans++", per_channel=False, preserve_zeros="auto",
            layers=None, min_weights=64):
    """Returns a copy of `model` whose kernels train as `n_clusters` shared values (weight sharing).

    Each chosen layer is wrapped in `ClusterWeights`, initialised by 1-D k-means on its trained
    kernel. Fine-tune the result with a small learning rate, then call
    `tfcompress.clustering.strip` to get a plain model whose kernels hold at most `n_clusters`
    distinct values. Composes with pruning: with `preserve_zeros` the zero entries of a pruned kernel
    keep a centroid fixed at 0, so they stay exactly zero through training and strip. The given
    model is not modified.

    Args:
        model: A built `keras.Model` (Sequential, Functional, nested or subclassed; pruning
            wrappers stripped first).
        n_clusters: Shared values per kernel (per output channel with `per_channel`), >= 2.
            Defaults to 16.
        init: "kmeans++", "linear" or "density" initial centroids before k-means. Defaults to "kmeans++".
        per_channel: Cluster each output channel separately. Defaults to False.
        preserve_zeros: True, False, or "auto" (True for a kernel with at least 1 % exact zeros).
            Defaults to "auto".
        layers: Names of the layers to cluster; None clusters every Dense/Conv layer with at least
            `min_weights` kernel entries. Defaults to None.
        min_weights: Smallest kernel clustered when `layers` is None. Defaults to 64.

    Returns:
        A new `keras.Model` with `ClusterWeights` wrappers.

    Example:
        >>> import keras
        >>> from tfcompress.clustering import cluster
        >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
        >>> clustered = cluster(model, n_clusters=4)
        >>> type(clustered.layers[0]).__name__
        'ClusterWeights'

    References:
        Han, Mao & Dally 2016, "Deep Compression: Compressing Deep Neural Networks with Pruning,
        Trained Quantization and Huffman Coding".
    """
    check_model(model, "cluster")
    if init not in INITS:
        raise ValueError(f"cluster: init must be one of {INITS}, got {init!r}.")
    if preserve_zeros not in (True, False, "auto"):
        raise ValueError(f"cluster: preserve_zeros must be True, False or 'auto', got {preserve_zeros!r}.")
    all_layers = list(iter_layers(model))
    if layers is not None:
        check_layer_names(model, layers, "cluster")
    chosen = {}
    for layer in all_layers:
        if isinstance(layer, ClusterWeights):
            raise ValueError(f"cluster: layer '{layer.name}' is already clustered; strip it first.")
        if type(layer).__name__ == "PruneWrapper":
            raise ValueError(
                f"cluster: layer '{layer.name}' is a PruneWrapper; call tfcompress.pruning.strip(model) "
                "first, then cluster (pruned zeros are kept with preserve_zeros).")
        if layers is not None and layer.name not in layers:
            continue
        has_kernel = getattr(layer, "kernel", None) is not None and type(layer).__name__ in CLUSTERABLE
        if not has_kernel:
            if layers is not None:
                raise ValueError(
                    f"cluster: layer '{layer.name}' ({type(layer).__name__}) has no kernel to cluster; "
                    f"supported classes: {', '.join(CLUSTERABLE)}. Remove it from `layers`.")
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        if layers is None and kernel.size < min_weights:
            continue
        zeros = preserve_zeros if preserve_zeros != "auto" else bool(np.mean(kernel == 0) >= 0.01)
        chosen[id(layer)] = zeros

    def make(layer):
        if id(layer) not in chosen:
            return None
        wrapper = ClusterWeights(copy_layer(layer), n_clusters=n_clusters, init=init,
                                 per_channel=per_channel, preserve_zeros=chosen[id(layer)],
                                 name=f"cluster_{layer.name}")
        build_like(wrapper, layer)  # k-means runs on the copied kernel while building
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        logging.info("cluster: layer '%s' (%s), %d weights -> %d shared values%s, RMS error %.3g",
                     layer.name, type(layer).__name__, kernel.size, n_clusters,
                     " per channel" if per_channel else "",
                     float(np.sqrt(np.mean((wrapper.clustered_kernel() - kernel) ** 2))))
        return wrapper

    return rebuild(model, make)
