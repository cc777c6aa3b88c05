"""tfcompress.clustering: weight sharing (k-means clustering of kernels) and strip.

`cluster` wraps the kernels of a trained model in `ClusterWeights` so they train as a few shared
centroids; `strip` returns a plain model whose kernels hold at most `n_clusters` distinct values
(per channel if asked), which gzip compresses well once exported. Zeros of a pruned model stay
zero (`preserve_zeros`).
"""

from tfcompress.clustering.cluster import cluster
from tfcompress.clustering.cluster_weights import ClusterWeights
from tfcompress.clustering.strip import strip

__all__ = ["ClusterWeights", "cluster", "strip"]
