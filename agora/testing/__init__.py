"""Public test kit: the deterministic simulator and helpers for testing Agora."""
