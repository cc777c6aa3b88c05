"""strip(): one call that turns a model mid-compression into plain Keras layers."""


def strip(model, keep_quantization=True):
    """Returns a copy of `model` with every tfcompress training wrapper unwrapped.

    Each wrapper knows how to unwrap itself (its `unwrap()` method returns a new, standard, built
    layer with its trained state baked into the weights): `PruneWrapper` multiplies its masks into
    the weights, `ClusterWeights` writes the clustered kernel. Quantization-aware layers are kept
    (their fake-quant ranges are what `export_tflite(..., quantize="int8")` uses). Works on
    Sequential, Functional (with `keras.ops` nodes), nested and subclassed models; the given model
    is never mutated, and a model with nothing to strip comes back as a copy.

    Args:
        model: A built `keras.Model`, possibly holding tfcompress wrappers.
        keep_quantization: Keep quantization-aware wrappers (they have no `unwrap()`). Only True is
            supported today. Defaults to True.

    Returns:
        A new `keras.Model` holding no tfcompress training wrapper.

    Example:
        >>> import keras, tfcompress
        >>> from tfcompress.pruning import prune, ConstantSparsity
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> plain = tfcompress.strip(prune(model, schedule=ConstantSparsity(0.5)))
        >>> type(plain.layers[0]).__name__
        'Dense'
    """
    from tfcompress import _surgery

    if keep_quantization is not True:
        raise ValueError("strip(): keep_quantization=False is not supported; quantization-aware layers "
                         "lower to int8 with export_tflite(..., quantize='int8').")
    _surgery.check_model(model, "strip")
    return _surgery.unwrap_all(model)
