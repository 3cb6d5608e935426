"""Client commands about money: ``gpuyard billing`` (balance, ledger, operator credits) and
``gpuyard usage``. Amounts are integer cents, as the API gives them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from gpuyard.cli.connection import ApiKey, Raw, Url, run
from gpuyard.cli.output import show
from gpuyard.client import Client

billing = typer.Typer(
    help="Your balance, the ledger, and credits (operator).", invoke_without_command=True
)

SUMMARY_COLUMNS = [
    "balance_cents",
    "month_to_date_spend_cents",
    "burn_cents_per_hour",
    "currency",
]
LEDGER_COLUMNS = [
    "created_at",
    "kind",
    "amount_cents",
    "resource_kind",
    "resource_id",
    "gpu_seconds",
    "cents_per_hour",
    "description",
]
USAGE_COLUMNS = [
    "day",
    "resource_kind",
    "resource_id",
    "model",
    "gpu_seconds",
    "input_tokens",
    "output_tokens",
    "characters",
    "cost_cents",
]


@billing.callback()
def summary(ctx: typer.Context, url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """The balance, this month's spend and the burn rate per hour, in cents."""
    if ctx.invoked_subcommand is not None:
        return

    async def call(c: Client) -> Any:
        return await c.get(await c.org_path("billing"))

    show(run(url, api_key, call), SUMMARY_COLUMNS, raw)


@billing.command("ledger")
def ledger(
    kind: Annotated[
        str | None, typer.Option(help="Only 'credit' or 'usage' entries.", show_default="all")
    ] = None,
    resource: Annotated[
        str | None, typer.Option(help="Only this instance or cluster id.", show_default="all")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Ledger entries, oldest first."""

    async def call(c: Client) -> Any:
        path = await c.org_path("billing/ledger")
        entries: list[Any] = []
        cursor = None
        while len(entries) < limit:
            page = await c.get(
                path,
                kind=kind,
                resource_id=resource,
                limit=min(100, limit - len(entries)),
                cursor=cursor,
            )
            entries += page["data"]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        return entries

    show(run(url, api_key, call), LEDGER_COLUMNS, raw)


@billing.command("credit")
def credit(
    org_id: Annotated[str, typer.Argument(help="The org to credit (org_…).")],
    cents: Annotated[int, typer.Argument(help="Whole cents to add.")],
    description: Annotated[str | None, typer.Option(help="Shown in the ledger.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Retrying with the same key credits once.", show_default="a new one"),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Add money to an org's balance (operator)."""

    async def call(c: Client) -> Any:
        return await c.request(
            "POST",
            f"/v1/admin/orgs/{org_id}/credits",
            json={"amount_cents": cents, "description": description},
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        )

    show(run(url, api_key, call), ["id", "org_id", "amount_cents", "created_at"], raw)


def usage(
    since: Annotated[
        str | None,
        typer.Option(help="From this time (RFC 3339).", show_default="the month's start"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this time (RFC 3339).", show_default="now")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Charged usage by day, resource and model: GPU-seconds, tokens, characters spoken and
    cost in cents."""

    async def call(c: Client) -> Any:
        return await c.get(await c.org_path("usage"), since=since, until=until)

    found = run(url, api_key, call)
    if raw:
        show(found, [], raw)
        return
    lines = found["data"]
    show(lines, USAGE_COLUMNS, raw)
    print(f"total: {found['gpu_seconds']} GPU-seconds, {found['cost_cents']} cents")
    used = {k: sum(int(u.get(k) or 0) for u in lines) for k in USAGE_COLUMNS[5:8]}
    if any(used.values()):
        print(
            f"tokens: {used['input_tokens']} input, {used['output_tokens']} output; "
            f"characters: {used['characters']}"
        )
