"""``gpuyard server`` with suggested fixes applied from outside, to measure them before anyone
changes ``src/``. For benchmarks only: each fix is a stand-in for a change described in
bench/README.md, switched on by name in ``GPUYARD_BENCH_WHATIF`` (comma-separated, or ``all``):

==================  ===========================================================================
``uvloop``          run the server on uvloop (``cli/serve.py`` runs ``asyncio.run`` itself, so
                    uvicorn's own loop choice never happens)
``inline-deps``     call FastAPI's synchronous dependencies inline instead of in the thread pool
                    (stand-in for making ``deps.get_context``/``get_settings``/``get_clock`` async)
``no-preping``      ``pool_pre_ping=False`` on Postgres (one round trip less per request)
``quiet-workloads`` skip the workload UPDATE when a heartbeat reports nothing new
``agent-first``     match ``/v1/agent/*`` before every other router
``keepalive``       uvicorn ``timeout_keep_alive=20`` (longer than the 5 s heartbeat interval)
``gc-freeze``       ``gc.collect(); gc.freeze()`` once the server has started
==================  ===========================================================================

    GPUYARD_BENCH_WHATIF=all .venv/bin/python bench/heartbeats.py --db postgres \\
        --server-cmd ".venv/bin/python bench/whatif_server.py"
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import uvicorn

FIXES = (
    "uvloop",
    "inline-deps",
    "no-preping",
    "quiet-workloads",
    "agent-first",
    "keepalive",
    "gc-freeze",
)


def wanted() -> set[str]:
    names = {n.strip() for n in os.environ.get("GPUYARD_BENCH_WHATIF", "").split(",") if n.strip()}
    if "all" in names:
        return set(FIXES)
    unknown = names - set(FIXES)
    if unknown:
        raise SystemExit(f"GPUYARD_BENCH_WHATIF: unknown {sorted(unknown)}; known: {FIXES}")
    return names


def apply(fixes: set[str]) -> None:
    if "uvloop" in fixes:
        import uvloop

        uvloop.install()

    if "inline-deps" in fixes:
        import fastapi.dependencies.utils as fastapi_deps

        async def inline(func: Any, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        fastapi_deps.run_in_threadpool = inline  # type: ignore[assignment]

    if "no-preping" in fixes:
        import gpuyard.server.app as app_module
        from gpuyard.server import db

        def create_engine(url: str, **kwargs: Any) -> Any:
            if not db.is_sqlite(url):
                kwargs.setdefault("pool_pre_ping", False)
            return db.create_engine(url, **kwargs)

        app_module.create_engine = create_engine  # type: ignore[assignment]

    if "quiet-workloads" in fixes:
        from gpuyard.server.services import workloads

        apply_status = workloads.apply_status

        async def quiet(session: Any, *, clock: Any, row: Any, status: Any) -> bool:
            unchanged = (
                status.spec_hash in (None, row.spec_hash)
                and status.state.value == row.state
                and status.exit_code == row.exit_code
                and status.host_port == row.host_port
                and status.message == row.message
                and status.log_tail is None
                and (status.started_at or row.started_at) == row.started_at
                and status.finished_at == row.finished_at
            )
            if unchanged:
                return False
            return await apply_status(session, clock=clock, row=row, status=status)

        workloads.apply_status = quiet  # type: ignore[assignment]

    if "agent-first" in fixes:
        import gpuyard.cli.serve as serve_module
        import gpuyard.server.app as app_module

        create_app = app_module.create_app

        def agent_first(*args: Any, **kwargs: Any) -> Any:
            app = create_app(*args, **kwargs)
            routes = app.router.routes
            agent = [
                r
                for r in routes
                if getattr(getattr(r, "original_router", None), "prefix", "") == "/v1/agent"
            ]
            for route in agent:
                routes.remove(route)
                routes.insert(0, route)
            return app

        serve_module.create_app = agent_first  # type: ignore[assignment]

    if "keepalive" in fixes:
        config_init = uvicorn.Config.__init__

        def patient(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("timeout_keep_alive", 20)
            config_init(self, *args, **kwargs)

        uvicorn.Config.__init__ = patient  # type: ignore[method-assign]

    if "gc-freeze" in fixes:
        startup = uvicorn.Server.startup

        async def frozen(self: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
            await startup(self, *args, **kwargs)
            gc.collect()
            gc.freeze()

        uvicorn.Server.startup = frozen  # type: ignore[method-assign]


if __name__ == "__main__":
    fixes = wanted()
    print(f"what-if fixes: {', '.join(sorted(fixes)) or 'none'}", flush=True)
    apply(fixes)
    from gpuyard.cli.main import app

    sys.argv = ["gpuyard", "server"]
    app()
