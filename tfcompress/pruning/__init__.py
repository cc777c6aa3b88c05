"""tfcompress.pruning: magnitude / Taylor pruning of Keras 3 models with schedules and patterns.

`prune` wraps layers in `PruneWrapper`, `PruningCallback` drives the schedule during `fit`,
`strip` bakes the zeros into a plain model and `shrink` physically removes pruned channels.
"""

from tfcompress.pruning.block import Block
from tfcompress.pruning.channels import Channels
from tfcompress.pruning.constant_sparsity import ConstantSparsity
from tfcompress.pruning.n_of_m import NofM
from tfcompress.pruning.polynomial_decay import PolynomialDecay
from tfcompress.pruning.prune import prune
from tfcompress.pruning.prune_wrapper import PruneWrapper
from tfcompress.pruning.pruning_callback import PruningCallback
from tfcompress.pruning.pruning_logger import PruningLogger
from tfcompress.pruning.pruning_pattern import PruningPattern
from tfcompress.pruning.pruning_schedule import PruningSchedule
from tfcompress.pruning.sensitivity import sensitivity
from tfcompress.pruning.shrink import shrink
from tfcompress.pruning.strip import strip
from tfcompress.pruning.unstructured import Unstructured

__all__ = [
    "Block",
    "Channels",
    "ConstantSparsity",
    "NofM",
    "PolynomialDecay",
    "PruneWrapper",
    "PruningCallback",
    "PruningLogger",
    "PruningPattern",
    "PruningSchedule",
    "Unstructured",
    "prune",
    "sensitivity",
    "shrink",
    "strip",
]
