"""Each workload charge records the machine (host number) it ran on, and migration 0017 gives the
meters and instance charges written before it theirs, on both databases."""

from __future__ import annotations

from alembic import command
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from gpuyard.server import orm
from gpuyard.server.db import write_session
from gpuyard.server.migrate import alembic_config, current_revision, head_revision
from tests.harness import Api
from tests.server.test_metering import meter, rented, run_pass, start_running
from tests.server.test_metering_workers_and_disk import add_worker


async def _machines(api: Api) -> tuple[dict[str, int | None], set[tuple[str, int | None]]]:
    """(each meter's machine by workload, the (workload, machine) of every usage entry)."""
    async with api.ctx.sessions() as s:
        meters = dict((await s.execute(select(orm.Meter.workload_id, orm.Meter.machine_id))).all())
        entries = (
            await s.execute(
                select(orm.LedgerEntry.key, orm.LedgerEntry.machine_id).where(
                    orm.LedgerEntry.kind == "usage"
                )
            )
        ).all()
    return meters, {(key.split(":")[1], machine) for key, machine in entries}


def _to(revision: str, direction: str) -> object:
    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        getattr(command, direction)(cfg, revision)

    return run


async def test_charges_name_their_machine_and_the_migration_fills_in_earlier_ones(
    api: Api,
) -> None:
    t, host, _, vm = await rented(api, host_gpus=3, cents_per_gpu_hour=3600)
    async with api.ctx.sessions() as s:
        held = set(await s.scalars(select(orm.Gpu.index).where(orm.Gpu.workload_id == vm)))
        number = await s.scalar(select(orm.Host.pk).where(orm.Host.id == host.host_id))
    kept, ended = [
        await add_worker(api, host.host_id, t.org_id, [i]) for i in sorted({0, 1, 2} - held)
    ]
    await host.beat()
    for wid in (vm, kept, ended):
        await start_running(api, host, wid)
    m = meter(api)
    await run_pass(m)
    for _ in range(2):  # two charges each
        api.clock.advance(seconds=120)
        await run_pass(m)

    meters, entries = await _machines(api)
    assert meters == {vm: number, kept: number, ended: number}
    assert entries == {(vm, number), (kept, number), (ended, number)}

    # As a database written before 0017: down to 0016 (the columns go) and up again.
    async with api.ctx.engine.connect() as conn:
        await conn.run_sync(_to("0016", "downgrade"))
        await conn.commit()
    assert await current_revision(api.ctx.engine) == "0016"
    async with write_session(api.ctx.sessions) as s:  # one worker has ended: its row is gone
        await s.execute(
            update(orm.Gpu).where(orm.Gpu.workload_id == ended).values(workload_id=None)
        )
        await s.execute(orm.Workload.__table__.delete().where(orm.Workload.id == ended))
    async with api.ctx.engine.connect() as conn:
        await conn.run_sync(_to("head", "upgrade"))
        await conn.commit()
    assert await current_revision(api.ctx.engine) == head_revision()

    # The instance's and the running worker's meters and charges have their machine back (every
    # charge of each); the ended worker's cannot.
    meters, entries = await _machines(api)
    assert meters == {vm: number, kept: number, ended: None}
    assert entries == {(vm, number), (kept, number), (ended, None)}
    async with api.ctx.sessions() as s:
        charges = await s.scalar(
            select(func.count()).where(
                orm.LedgerEntry.kind == "usage", orm.LedgerEntry.machine_id == number
            )
        )
    assert charges == 4  # two each of the instance and the running worker
