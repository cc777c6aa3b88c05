"""tfcompress.quantization: quantization-aware training, post-training calibration, mixed precision.

`quantize(model)` returns a model that simulates TFLite's int8 kernels while it trains (fake-quant
with straight-through gradients, BatchNormalization folding, quantization points where the converter
puts them); `tfcompress.export.export_tflite(qat_model, quantize="int8")` lowers it to a full-integer
file with the trained ranges and no representative data. A pruned model keeps its zeros through QAT
and into the int8 file (pruning-preserving QAT, `quantize(..., preserve_sparsity="auto")`).
"""

from tfcompress.quantization.calibrate import calibrate
from tfcompress.quantization.int8_scheme import Int8Scheme
from tfcompress.quantization.quantize import quantize
from tfcompress.quantization.quantize_config import QuantizeConfig
from tfcompress.quantization.quantize_layer import QuantizeLayer
from tfcompress.quantization.quantize_wrapper import QuantizeWrapper
from tfcompress.quantization.sensitivity import keep_float_for_budget, sensitivity

__all__ = [
    "Int8Scheme",
    "QuantizeConfig",
    "QuantizeLayer",
    "QuantizeWrapper",
    "calibrate",
    "keep_float_for_budget",
    "quantize",
    "sensitivity",
]
