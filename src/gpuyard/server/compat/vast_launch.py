"""What a Vast create-instance body asks gpuyard to run (a :class:`LaunchSpec`).

- ``image``, ``label``, ``disk`` (GB), ``runtype`` and ``args`` carry over; ``target_state``
  ``stopped`` creates the instance stopped.
- ``env``: plain keys are environment variables. Keys that start with ``-`` are the docker flags
  the CLI's ``--env`` string turns into keys: the first ``-p [host:]container[/tcp]`` names the
  port the workload listens on (the agent publishes it on a free host port of its own choosing,
  as Vast does; the host side is not honoured); further ``-p``, UDP ports, ``-v``, ``-n`` and
  ``-h`` are ignored.
- ``onstart`` is a setup script run before the image's program (``ssh``/``jupyter`` runtypes, and
  none), except in ``args`` mode, where Vast takes it as the entrypoint (the CLI sends
  ``--entrypoint`` there): the instance runs ``exec <onstart> "$@"`` with ``args`` as its
  arguments (a multi-line ``onstart`` runs as a script with ``args`` as ``$1``, ``$2``, ...).
  docs/agent-runtimes.md says how a runtime turns that into a process.
- ``price`` (bids), ``image_login``, ``python_utf8``, ``lang_utf8``, ``jupyter_*``, ``force``,
  ``cancel_unavail``, ``user``, ``volume_info`` and ``extra`` are ignored; templates are not
  supported.
"""

from __future__ import annotations

from gpuyard.core.errors import InvalidRequest
from gpuyard.server.schemas.vast import AskCreate
from gpuyard.server.services.instances import LaunchSpec


def split_env(env: dict[str, str]) -> tuple[dict[str, str], int | None]:
    """Environment variables, and the container port of the first TCP ``-p`` mapping."""
    variables: dict[str, str] = {}
    port: int | None = None
    for key, value in env.items():
        if not key.startswith("-"):
            variables[key] = value
            continue
        flag, _, mapping = key.partition(" ")
        if flag != "-p" or port is not None:
            continue
        mapping, _, proto = mapping.strip().partition("/")
        if proto not in ("", "tcp"):
            continue
        container = mapping.rsplit(":", 1)[-1]
        if not (container.isascii() and container.isdigit()) or not 1 <= int(container) <= 65535:
            raise InvalidRequest(
                f"env: {key!r} is not a port mapping like '-p 8080:8080'", param="env"
            )
        port = int(container)
    return variables, port


def _is_args_mode(runtype: str | None) -> bool:
    return runtype is not None and "args" in runtype.split()


def launch_spec(body: AskCreate) -> LaunchSpec:
    if not (body.image or body.onstart or body.args):
        if body.template_hash_id:
            raise InvalidRequest(
                "templates are not supported; give an image (--image)", param="template_hash_id"
            )
        raise InvalidRequest(
            "give an image (--image), or an onstart command or args to run", param="image"
        )
    env, port = split_env(body.env or {})
    command: str | None = None
    onstart = body.onstart
    if onstart and _is_args_mode(body.runtype):
        command = onstart if "\n" in onstart.strip() else f'exec {onstart} "$@"'
        onstart = None
    return LaunchSpec(
        image=body.image,
        command=command,
        onstart=onstart,
        args=list(body.args or []),
        env=env,
        port=port,
        label=body.label,
        disk_gb=float(body.disk) if body.disk is not None else None,
        runtype=body.runtype,
        start=body.target_state != "stopped",
    )
