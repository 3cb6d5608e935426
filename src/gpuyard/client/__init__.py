"""A small typed client of the native gpuyard API (async, over httpx)."""

from gpuyard.client.http import ApiError, Client

__all__ = ["ApiError", "Client"]
