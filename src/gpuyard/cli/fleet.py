"""Client commands for the operator: hosts, join tokens, prices, organizations and keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gpuyard.cli.connection import ApiKey, Raw, Url, resolve_url, run
from gpuyard.cli.output import show
from gpuyard.client import Client

hosts = typer.Typer(help="GPU hosts (operator).", no_args_is_help=True)
join_tokens = typer.Typer(help="Join tokens for new hosts (operator).", no_args_is_help=True)
prices = typer.Typer(help="GPU prices in cents per GPU-hour (operator).", no_args_is_help=True)
orgs = typer.Typer(help="Organizations (operator).", no_args_is_help=True)
keys = typer.Typer(help="Your organization's API keys.", no_args_is_help=True)

HostId = Annotated[str, typer.Argument(help="The host's id (host_…) or its number.")]

HOST_COLUMNS = ["id", "number", "name", "status", "cordoned", "draining", "address", "gpus"]


def _host_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for h in items:
        used = sum(1 for g in h["gpus"] if g["allocated"])
        names = sorted({g["name"] for g in h["gpus"]})
        h["gpus"] = f"{len(h['gpus']) - used}/{len(h['gpus'])} free {', '.join(names)}"
    return items


@hosts.command("list")
def list_hosts(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Every host with its status and free GPUs."""

    async def call(c: Client) -> Any:
        return (await c.get("/v1/admin/hosts", limit=100))["data"]

    rows = run(url, api_key, call)
    show(rows if raw else _host_rows(rows), HOST_COLUMNS, raw)


def _host_action(verb: str, help_text: str) -> None:
    def command(host_id: HostId, url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
        async def call(c: Client) -> Any:
            if verb == "remove":
                return await c.request("DELETE", f"/v1/admin/hosts/{host_id}")
            return await c.post(f"/v1/admin/hosts/{host_id}/{verb}")

        row = run(url, api_key, call)
        show(row if raw else _host_rows([row])[0], HOST_COLUMNS, raw)

    command.__doc__ = help_text
    hosts.command(verb)(command)


_host_action("cordon", "Stop offering a host's GPUs; what runs keeps running.")
_host_action("uncordon", "Offer a cordoned host's GPUs again.")
_host_action("drain", "Cordon a host and move deployment replicas elsewhere.")
_host_action("remove", "Retire a host (refused while it runs workloads).")


@join_tokens.command("create")
def create_join_token(
    name: Annotated[str, typer.Option(help="Which host it is for.")] = "",
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """A single-use token for `gpuyard agent --token`."""

    async def call(c: Client) -> Any:
        return await c.post("/v1/admin/join-tokens", {"name": name})

    token = run(url, api_key, call)
    if raw:
        show(token, [], raw)
        return
    print(token["token"])
    typer.echo(
        f"On the GPU host: gpuyard agent --server {resolve_url(url)[0]} --token {token['token']}",
        err=True,
    )


@join_tokens.command("list")
def list_join_tokens(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Join tokens, used or not."""

    async def call(c: Client) -> Any:
        return (await c.get("/v1/admin/join-tokens", limit=100))["data"]

    show(run(url, api_key, call), ["id", "name", "prefix", "status", "used_by_host"], raw)


@join_tokens.command("revoke")
def revoke_join_token(
    token_id: Annotated[str, typer.Argument(help="The token's id, from `join-tokens list`.")],
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Revoke a join token that was not used yet."""

    async def call(c: Client) -> Any:
        return await c.request("DELETE", f"/v1/admin/join-tokens/{token_id}")

    show(run(url, api_key, call), ["id", "name", "status"], raw)


@prices.command("list")
def list_prices(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """The price of each GPU type, in cents per GPU-hour."""

    async def call(c: Client) -> Any:
        return await c.get("/v1/admin/prices")

    show(run(url, api_key, call), ["gpu_type", "gpu_name", "cents_per_gpu_hour"], raw)


@prices.command("set")
def set_price(
    gpu_type: Annotated[str, typer.Argument(help="e.g. rtx-4090, 'RTX 4090' or RTX_4090.")],
    cents: Annotated[int, typer.Argument(help="Cents per GPU-hour.")],
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Set the price of a GPU type."""

    async def call(c: Client) -> Any:
        return await c.request(
            "PUT", f"/v1/admin/prices/{gpu_type}", json={"cents_per_gpu_hour": cents}
        )

    show(run(url, api_key, call), ["gpu_type", "gpu_name", "cents_per_gpu_hour"], raw)


@orgs.command("create")
def create_org(
    name: Annotated[str, typer.Argument(help="The organization's name.")],
    with_key: Annotated[bool, typer.Option(help="Also issue its first org:write key.")] = True,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Create an organization (and its first key, printed once)."""

    async def call(c: Client) -> Any:
        org = await c.post("/v1/admin/orgs", {"name": name})
        if with_key:
            key = await c.post(f"/v1/admin/orgs/{org['id']}/api-keys", {"name": "first"})
            org["api_key"] = key["key"]
        return org

    show(run(url, api_key, call), ["id", "name", "slug", "api_key"], raw)


@orgs.command("list")
def list_orgs(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Every organization."""

    async def call(c: Client) -> Any:
        return (await c.get("/v1/admin/orgs", limit=100))["data"]

    show(run(url, api_key, call), ["id", "name", "slug", "status"], raw)


@keys.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="org:write, org:read or inference; repeat for several.", show_default="org:write"
        ),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Create an API key; the secret is printed once."""

    async def call(c: Client) -> Any:
        return await c.post(
            await c.org_path("api-keys"), {"name": name, "scopes": scope or ["org:write"]}
        )

    show(run(url, api_key, call), ["id", "name", "scopes", "key"], raw)


@keys.command("list")
def list_keys(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Your organization's API keys (their secrets are never shown again)."""

    async def call(c: Client) -> Any:
        return (await c.get(await c.org_path("api-keys"), limit=100))["data"]

    show(run(url, api_key, call), ["id", "name", "prefix", "scopes", "status", "last_used_at"], raw)


@keys.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…), from `keys list`.")],
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Revoke an API key: it stops working at once."""

    async def call(c: Client) -> Any:
        return await c.request("DELETE", await c.org_path(f"api-keys/{key_id}"))

    show(run(url, api_key, call), ["id", "name", "status"], raw)
