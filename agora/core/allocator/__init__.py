"""The hierarchical DRF allocator, called synchronously by the master core."""

from agora.core.allocator.allocation import OfferDecision, Stage
from agora.core.allocator.allocator import AllocatorError, HierarchicalAllocator
from agora.core.allocator.options import AllocatorOptions, refuse_duration_s
from agora.core.allocator.quota import Quota

__all__ = [
    "AllocatorError",
    "AllocatorOptions",
    "HierarchicalAllocator",
    "OfferDecision",
    "Quota",
    "Stage",
    "refuse_duration_s",
]
