"""The hierarchical DRF allocator, called synchronously by the master core."""

from agora.core.allocator.allocator import HierarchicalAllocator, OfferDecision
from agora.core.allocator.options import AllocatorOptions, refuse_duration_s
from agora.core.allocator.quota import Quota

__all__ = [
    "AllocatorOptions",
    "HierarchicalAllocator",
    "OfferDecision",
    "Quota",
    "refuse_duration_s",
]
