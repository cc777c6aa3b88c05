"""prepare_for_export: turn a model holding tfcompress training wrappers into what gets converted.

Export knows no technique: `tfcompress.strip` unwraps every wrapper that follows the wrapper
protocol (an `unwrap()` method), and layers with `tfcompress_carries_ranges = True` (quantization-
aware fake-quant) are kept and serve as the int8 calibration.
"""

from tfcompress import _surgery


def prepare_for_export(model):
    """Returns the model to convert: training wrappers stripped, QAT fake-quant kept.

    A built subclassed model is called on `keras.Input`s of its build shape, inside a Functional
    model sharing its weights, because the TFLite converter needs symbolic inputs. Recurrent layers
    (LSTM, GRU, SimpleRNN, also in Bidirectional) are copied with `unroll=True`: the converter
    cannot lower Keras's TensorList loop, and unrolled they are builtin ops (needs a fixed sequence
    length).

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
    if _surgery.has_wrappers(model):
        from tfcompress.strip import strip

        model = strip(model)
    # TFLite lowers recurrent layers unrolled (no TensorList loop): LSTM / GRU / SimpleRNN.
    model = _surgery.unroll_rnns(model)
    # A subclassed model gets symbolic inputs (from its build shape) so the converter can trace it.
    return _surgery.as_functional(model)


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
    return not _surgery.carries_ranges(model)
