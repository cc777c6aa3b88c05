"""Helpers about QAT models (internal): detection, walking quantization layers."""

import keras

from tfcompress._surgery import find_layers


def quantization_layers(model):
    """All QuantizeWrapper / QuantizeLayer instances in `model`, nested models included."""
    from tfcompress.quantization.quantize_layer import QuantizeLayer
    from tfcompress.quantization.quantize_wrapper import QuantizeWrapper

    return find_layers(model, lambda layer: isinstance(layer, (QuantizeWrapper, QuantizeLayer)))


def is_qat_model(model):
    """True when `model` holds tfcompress fake-quant layers (its ranges replace calibration data)."""
    return isinstance(model, keras.Model) and bool(quantization_layers(model))
