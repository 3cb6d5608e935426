"""The type of the wrapper each page module's ``routes`` gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from gpuyard.console.web import Visit

Wrap = Callable[[Callable[[Visit], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]
