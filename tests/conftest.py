"""Test-wide settings."""

from __future__ import annotations

from hypothesis import settings

# No per-example time limit: CI machines are slower and busier than laptops, and a
# slow example is not a failing one. Failures print the blob that reproduces them.
settings.register_profile("agora", deadline=None, print_blob=True)
settings.load_profile("agora")
