"""Helpers about QAT models (internal): detection, walking quantization layers."""

import keras


def quantization_layers(model):
    """All QuantizeWrapper / QuantizeLayer instances in `model`, nested models included."""
    from tfcompress.quantization.quantize_layer import QuantizeLayer
    from tfcompress.quantization.quantize_wrapper import QuantizeWrapper

    found = []
    for layer in model.layers:
        if isinstance(layer, (QuantizeWrapper, QuantizeLayer)):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(quantization_layers(layer))
    return found


def is_qat_model(model):
    """True when `model` holds tfcompress fake-quant layers (its ranges replace calibration data)."""
    return isinstance(model, keras.Model) and bool(quantization_layers(model))
