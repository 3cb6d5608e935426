"""Client commands for customers: ``gpuyard offers``, ``gpuyard vms``, ``gpuyard ssh-keys``."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gpuyard.cli import log_follow
from gpuyard.cli.connection import ApiKey, Raw, Url, err, parse_env, run
from gpuyard.cli.output import show
from gpuyard.client import Client

offers = typer.Typer(help="Search GPU offers.", no_args_is_help=True)
vms = typer.Typer(help="Rent and manage instances.", no_args_is_help=True)
ssh_keys = typer.Typer(help="SSH keys given to your instances.", no_args_is_help=True)

VmId = Annotated[
    str, typer.Argument(metavar="VM_ID", help="The instance's id (vm_…) or its number.")
]

OFFER_COLUMNS = [
    "id",
    "gpu_name",
    "num_gpus",
    "gpu_ram_mb",
    "price_cents_per_hour",
    "cpu_cores",
    "geolocation",
    "host_id",
]
VM_COLUMNS = [
    "id",
    "number",
    "gpu_name",
    "num_gpus",
    "actual_status",
    "intended_status",
    "price_cents_per_hour",
    "label",
    "status_msg",
]


@offers.command("search")
def search_offers(
    query: Annotated[
        str,
        typer.Argument(
            help="Filters in the Vast CLI syntax, e.g. 'gpu_name=RTX_4090 num_gpus>=2 "
            "geolocation in [SE,TW]'.",
            show_default="every offer",
        ),
    ] = "",
    order: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--order",
            help="Sort fields, '-' after one for descending, e.g. 'dph_total-'.",
            show_default="cheapest first",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many offers.")] = 64,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Search offers with the Vast query syntax; cheapest first unless -o says otherwise."""

    async def call(c: Client) -> Any:
        params = {"query": query or None, "order": order, "limit": limit}
        return (await c.get(await c.org_path("offers"), **params))["data"]

    show(run(url, api_key, call), OFFER_COLUMNS, raw)


@vms.command("create")
def create_vm(
    offer_id: Annotated[int, typer.Argument(help="An offer id from `gpuyard offers search`.")],
    image: Annotated[
        str | None, typer.Option(help="Container image to run (docker runtime).")
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(help="Shell command to run; the port the host gave it is in $PORT."),
    ] = None,
    onstart: Annotated[str | None, typer.Option(help="Shell script run before it.")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="NAME=VALUE", help="An environment variable; repeat."),
    ] = None,
    label: Annotated[str | None, typer.Option(help="A label for the instance.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Rent an offer as an instance."""
    body = {
        "offer_id": offer_id,
        "image": image,
        "command": command,
        "onstart": onstart,
        "env": parse_env(env),
        "label": label,
    }

    async def call(c: Client) -> Any:
        return await c.post(
            await c.org_path("vms"), {k: v for k, v in body.items() if v is not None}
        )

    show(run(url, api_key, call), VM_COLUMNS, raw)


@vms.command("list")
def list_vms(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Your instances."""

    async def call(c: Client) -> Any:
        return (await c.get(await c.org_path("vms"), limit=100))["data"]

    show(run(url, api_key, call), VM_COLUMNS, raw)


@vms.command("get")
def get_vm(vm_id: VmId, url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """One instance."""

    async def call(c: Client) -> Any:
        return await c.get(await c.org_path(f"vms/{vm_id}"))

    show(run(url, api_key, call), VM_COLUMNS, raw)


def _action(verb: str, help_text: str) -> None:
    def command(vm_id: VmId, url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
        async def call(c: Client) -> Any:
            path = await c.org_path(f"vms/{vm_id}")
            if verb == "destroy":
                return await c.request("DELETE", path)
            return await c.post(f"{path}/{verb}")

        show(run(url, api_key, call), VM_COLUMNS, raw)

    command.__doc__ = help_text
    vms.command(verb)(command)


_action("start", "Start an instance (an ended one runs again from the start).")
_action("stop", "Stop an instance; its GPUs stay reserved.")
_action("restart", "Restart an instance.")
_action("destroy", "Destroy an instance; its GPUs are freed.")


@vms.command("label")
def label_vm(
    vm_id: VmId,
    label: Annotated[str, typer.Argument(help="The new label.")],
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Set an instance's label."""

    async def call(c: Client) -> Any:
        return await c.request("PATCH", await c.org_path(f"vms/{vm_id}"), json={"label": label})

    show(run(url, api_key, call), VM_COLUMNS, raw)


@vms.command("logs")
def vm_logs(
    vm_id: VmId,
    tail: Annotated[int, typer.Option(help="How many last lines.", min=1, max=10_000)] = 200,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new output (it arrives about every 5 s) until the instance "
            "ends or Ctrl-C.",
        ),
    ] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """An instance's output: while it runs, as its host last reported it; once it ended, its
    last lines."""

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    async def call(c: Client) -> None:
        path = await c.org_path(f"vms/{vm_id}/logs")
        if follow:
            await log_follow.follow(c, path, tail=tail, out=out, note=err.print)
        else:
            out((await c.send("GET", path, params={"tail": tail})).text)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow
        run(url, api_key, call)


@ssh_keys.command("add")
def add_ssh_key(
    public_key: Annotated[str, typer.Argument(help="The key text, or a path to a .pub file.")],
    name: Annotated[str | None, typer.Option(help="A name for it.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Add an SSH public key for your instances."""
    path = Path(public_key).expanduser()
    text = path.read_text().strip() if path.is_file() else public_key

    async def call(c: Client) -> Any:
        return await c.post(await c.org_path("ssh-keys"), {"public_key": text, "name": name})

    show(run(url, api_key, call), ["id", "name", "fingerprint"], raw)


@ssh_keys.command("list")
def list_ssh_keys(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Your SSH keys."""

    async def call(c: Client) -> Any:
        return (await c.get(await c.org_path("ssh-keys"), limit=100))["data"]

    show(run(url, api_key, call), ["id", "name", "fingerprint", "created_at"], raw)


@ssh_keys.command("delete")
def delete_ssh_key(
    key_id: Annotated[str, typer.Argument(help="The SSH key's id, from `gpuyard ssh-keys list`.")],
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Delete an SSH key."""

    async def call(c: Client) -> Any:
        return await c.request("DELETE", await c.org_path(f"ssh-keys/{key_id}"))

    show(run(url, api_key, call), ["id", "name", "fingerprint"], raw)
