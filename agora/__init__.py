"""Agora: a datacenter kernel speaking the Mesos v1 APIs."""

__version__ = "0.1.0"
