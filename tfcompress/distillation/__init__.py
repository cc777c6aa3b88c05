"""tfcompress.distillation: knowledge distillation for Keras 3 models.

`Distiller` (a `keras.Model`) trains a student from a frozen teacher with soft targets
(`SoftTargetLoss`, Hinton et al. 2015), intermediate-feature hints with learned adapters
(`FeatureLoss` + `FeatureAdapter`, FitNets) and attention transfer (`AttentionTransferLoss`).
It builds on `keras.distillation` (its loss classes extend Keras's and Keras's are accepted) and
adds adapters, attention transfer, subclassed students and `.keras` saving of the whole Distiller.
"""

from tfcompress.distillation.attention_transfer_loss import AttentionTransferLoss
from tfcompress.distillation.distiller import Distiller
from tfcompress.distillation.feature_adapter import FeatureAdapter
from tfcompress.distillation.feature_loss import FeatureLoss
from tfcompress.distillation.soft_target_loss import SoftTargetLoss

__all__ = ["AttentionTransferLoss", "Distiller", "FeatureAdapter", "FeatureLoss", "SoftTargetLoss"]
