"""prepare_for_export: turn a model holding tfcompress training wrappers into what gets converted.

Each technique adds ONE branch below once its strip function exists, with a lazy import inside
the function (avoids import cycles), and never mutates the given model:

    # pruning
    from tfcompress.pruning import strip_pruning
    if _has_layer(model, "PruneLowMagnitude"):  # or the technique's own check
        model = strip_pruning(model)

`needs_calibration(model)` tells `export_tflite` whether quantize="int8" needs representative
data: a quantization-aware (fake-quant) model carries its own ranges, so the QAT branch returns
False there.
"""


def prepare_for_export(model):
    """Returns the model to convert: training wrappers stripped, QAT fake-quant kept.

    The given model is never mutated; a technique's branch returns a new model.

    Args:
        model: A `keras.Model`, possibly holding tfcompress wrappers.

    Returns:
        A `keras.Model` ready for `tf.lite.TFLiteConverter` (the same object when there is
        nothing to strip).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> prepare_for_export(m) is m
        True
    """
    # pruning: PruneWrapper layers -> plain layers with the masks baked into the weights.
    from tfcompress.pruning.strip import has_prune_wrappers, strip as strip_pruning

    if has_prune_wrappers(model):
        model = strip_pruning(model)
    # clustering: ClusterWeights wrappers -> plain layers holding the clustered kernels.
    from tfcompress.clustering.strip import has_clusters, strip as strip_clusters

    if has_clusters(model):
        model = strip_clusters(model)
    return model


def needs_calibration(model):
    """True when quantize="int8" needs representative data for this (prepared) model.

    Args:
        model: The model returned by `prepare_for_export`.

    Returns:
        False for quantization-aware models whose fake-quant ranges the converter uses; True
        otherwise.

    Example:
        >>> import keras
        >>> needs_calibration(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
        True
    """
    # quantization-aware training: the fake-quant ranges are the calibration.
    from tfcompress.quantization._qat_model import is_qat_model

    if is_qat_model(model):
        return False
    return True
