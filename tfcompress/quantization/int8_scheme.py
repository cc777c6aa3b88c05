"""Int8Scheme: the numeric choices of quantization-aware training."""

import warnings

import keras

from tfcompress._config_object import ConfigObject


@keras.saving.register_keras_serializable(package="tfcompress")
class Int8Scheme(ConfigObject):
    """Numeric scheme of integer quantization: TFLite's int8 spec by default.

    Weights are symmetric (zero point 0, narrow range), per output channel for Conv2D, DepthwiseConv2D
    and SeparableConv2D, per tensor for Dense, Conv1D, Conv2DTranspose and Embedding: the TFLite
    converter cannot carry a per-channel axis through the transpose/ExpandDims it inserts for those
    kernels (it fails with "'tfl.transpose' op has mismatched quantized axes").
    Activations are asymmetric, with ranges tracked by an exponential moving average of each batch's
    min/max during training, frozen after `freeze_step` training steps.

    Args:
        ema_decay: Decay of the moving average of activation ranges. Defaults to 0.99.
        freeze_step: Training step after which activation ranges stop moving; `None` never freezes.
            Defaults to `None`.
        per_channel: Per-channel weight ranges where the converter supports them. Defaults to `True`.
        weight_bits: Bits of the weight grid. EXPERIMENTAL below 8: 2..7-bit fake-quant is for research
            only and is NOT deployable to TFLite integer kernels (the file would hold 8-bit weights
            that happen to use fewer levels). Defaults to 8.
        activation_bits: Bits of the activation grid. Defaults to 8.

    Example:
        >>> from tfcompress.quantization import Int8Scheme
        >>> scheme = Int8Scheme(freeze_step=500)
        >>> scheme.weight_bits, scheme.freeze_step
        (8, 500)

    References:
        Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
        Integer-Arithmetic-Only Inference" (CVPR).
    """

    def __init__(self, ema_decay=0.99, freeze_step=None, per_channel=True, weight_bits=8, activation_bits=8):
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}.")
        if freeze_step is not None and (int(freeze_step) != freeze_step or freeze_step < 0):
            raise ValueError(f"freeze_step must be None or an integer >= 0, got {freeze_step!r}.")
        for name, bits in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
            if int(bits) != bits or not 2 <= bits <= 8:
                raise ValueError(f"{name} must be an integer in 2..8, got {bits!r}.")
        if weight_bits < 8:
            warnings.warn(
                f"Int8Scheme(weight_bits={weight_bits}) is experimental: it simulates {weight_bits}-bit "
                "weights for research and is not deployable to TFLite integer kernels.",
                stacklevel=2,
            )
        self.ema_decay = float(ema_decay)
        self.freeze_step = None if freeze_step is None else int(freeze_step)
        self.per_channel = bool(per_channel)
        self.weight_bits = int(weight_bits)
        self.activation_bits = int(activation_bits)

    @property
    def deployable(self):
        """Whether a model trained with this scheme lowers to TFLite int8 kernels as simulated."""
        return self.weight_bits == 8 and self.activation_bits == 8

    def get_config(self):
        return {
            "ema_decay": self.ema_decay,
            "freeze_step": self.freeze_step,
            "per_channel": self.per_channel,
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
        }
