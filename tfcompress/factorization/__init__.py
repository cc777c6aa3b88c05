"""tfcompress.factorization: low-rank layers and SVD factorization of trained models.

`FactorizedDense` (x @ u @ v) and `FactorizedConv2D` (spatial SVD: a kx1 then a 1xk convolution)
are plain Keras layers that save to `.keras` and lower to ordinary TFLite ops. `factorize` swaps
the Dense/Conv2D layers of a trained model for them, initialised from the truncated SVD so the
untuned copy is the best rank-r approximation, and reports rank, size and FLOPs per layer.
"""

from tfcompress.factorization.factorize import factorize
from tfcompress.factorization.factorized_conv2d import FactorizedConv2D
from tfcompress.factorization.factorized_dense import FactorizedDense

__all__ = ["FactorizedConv2D", "FactorizedDense", "factorize"]
