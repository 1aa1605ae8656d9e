"""Pantheon: preemptible multi-DNN inference on edge GPUs."""

__version__ = "0.1.0"
