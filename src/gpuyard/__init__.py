"""gpuyard: a self-hostable GPU cloud."""

__version__ = "0.1.0"
