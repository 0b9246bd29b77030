"""Model sync schedules through the official Polytomic SDK, PostgreSQL to PostgreSQL: `runafter`
chains and joins (each sync runs once, after its upstreams; with `run_after_success_only` a
failed upstream starts nothing), the schedule builder's lists and ranges, several schedules at
once (`multi`), the schedule options, and the 422s naming the schedule field at fault.

Whether a sync was started is read from the server's state, not from how long the test
waited: the transaction that ends an upstream's execution is the one that makes its dependents
due, so once that execution is seen finished, a dependent that has neither an execution nor a
next run time never runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Callable, Iterator

import pytest
from polytomic import (
    BulkSyncDefaultScheduleRequest,
    Identity,
    ModelSyncV5Target,
    Polytomic,
    RunAfter,
    Schedule,
    SchemaConfiguration,
    Source,
    SyncField,
)

import support
from test_bulk_sync_api import refused
from test_model_sync_flow import EXECUTION_TIMEOUT_S, TERMINAL, describe
from test_model_sync_options import organization

ROWS = 5


@dataclasses.dataclass
class Setup:
    pt: Polytomic
    server: support.SynclineServer
    source_id: str
    destination_id: str
    table: str
    suffix: str


@pytest.fixture(scope="module")
def setup(server, admin: Polytomic) -> Iterator[Setup]:
    suffix = support.random_suffix()
    pt, org_id, _ = organization(server, admin, f"sdk-schedules-{suffix}")
    table = f"sched_people_{suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {table} (id int primary key, email text)")
        conn.execute(f"insert into {table} select g, 'user' || g || '@example.com' from generate_series(1, {ROWS}) g")
    source = pt.connections.create(
        name="schedules source", type="postgresql",
        configuration=server.postgres_configuration(server.source_db, "irrelevant-pw")).data
    destination = pt.connections.create(
        name="schedules destination", type="postgresql",
        configuration=server.postgres_configuration(server.destination_db, "irrelevant-pw")).data
    yield Setup(pt=pt, server=server, source_id=source.id, destination_id=destination.id, table=table, suffix=suffix)
    admin.organization.delete(org_id)


def sync(setup: Setup, name: str, schedule: Schedule, source_table: str = "") -> str:
    """A sync of `source_table` (the people table by default) into a destination table of its
    own, on `schedule`."""
    target = f"sched_{name}_{setup.suffix}"
    with setup.server.connect(setup.server.destination_db) as conn:
        conn.execute(f"create table {target} (id int primary key, email text)")
    model = setup.pt.models.create(connection_id=setup.source_id, name=f"{name} {support.random_suffix()}",
                                   configuration={"query": f"select id, email from {source_table or setup.table}"}).data
    return setup.pt.model_sync.create(
        name=f"{name} {support.random_suffix()}",
        mode="updateOrCreate",
        active=True,
        schedule=schedule,
        target=ModelSyncV5Target(connection_id=setup.destination_id, object=f"public.{target}"),
        identity=Identity(source=Source(model_id=model.id, field="id"), target="id", function="Equality"),
        fields=[SyncField(source=Source(model_id=model.id, field="email"), target="email")],
    ).data.id


def after(*sync_ids: str, success_only: bool | None = None, bulk: tuple[str, ...] = ()) -> Schedule:
    upstreams = RunAfter(sync_ids=list(sync_ids) or None, bulk_sync_ids=list(bulk) or None)
    return Schedule(frequency="runafter", run_after=upstreams, run_after_success_only=success_only)


MANUAL = Schedule(frequency="manual")


def executions(setup: Setup, sync_id: str) -> list:
    """The sync's executions, oldest first."""
    return list(setup.pt.model_sync.executions.list(sync_id, ascending=True).data or [])


def finished(setup: Setup, sync_id: str, count: int = 1) -> list:
    """The sync's executions once `count` of them exist and all ended; fails after a while."""
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    while True:
        runs = executions(setup, sync_id)
        if len(runs) >= count and all(r.status in TERMINAL for r in runs):
            return runs
        if time.monotonic() > deadline:
            pytest.fail(f"sync {sync_id}: expected {count} finished executions, have {[describe(r) for r in runs]}")
        time.sleep(0.2)


def idle(setup: Setup, sync_id: str) -> bool:
    """Whether nothing will start the sync: no execution waits or runs, and it has no next run."""
    status = setup.pt.model_sync.get_status(sync_id).data
    return status.current_execution is None and status.next_execution_time is None


def test_a_runafter_chain_runs_each_sync_once_in_order(setup: Setup):
    a = sync(setup, "chain_a", MANUAL)
    b = sync(setup, "chain_b", after(a))
    c = sync(setup, "chain_c", after(b))
    assert setup.pt.model_sync.get(b).data.schedule.run_after.sync_ids == [a], "the schedule is echoed"
    assert setup.pt.model_sync.get_status(b).data.next_execution_time is None, "a runafter sync has no time of its own"
    setup.pt.model_sync.start(a)
    [run_c] = finished(setup, c)
    [run_a], [run_b] = executions(setup, a), executions(setup, b)
    for run in (run_a, run_b, run_c):
        assert run.status == "completed", describe(run)
    assert run_b.created_at >= run_a.completed_at, "B started after A completed"
    assert run_c.created_at >= run_b.completed_at, "C started after B completed"
    assert all(idle(setup, s) for s in (a, b, c)), "nothing is left to start any of them"
    time.sleep(3)  # a few scheduler ticks (1 s each)
    assert [len(executions(setup, s)) for s in (a, b, c)] == [1, 1, 1], "each ran exactly once"


def test_run_after_success_only_skips_a_failed_upstream(setup: Setup):
    doomed = f"sched_doomed_{setup.suffix}"
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"create table {doomed} (id int primary key, email text)")
    upstream = sync(setup, "failing", MANUAL, source_table=doomed)
    strict = sync(setup, "strict", after(upstream, success_only=True))
    lenient = sync(setup, "lenient", after(upstream, success_only=False))
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"drop table {doomed}")  # the upstream's model query now fails
    setup.pt.model_sync.start(upstream)
    [failed] = finished(setup, upstream)
    assert failed.status == "failed", describe(failed)
    [ran] = finished(setup, lenient)
    assert ran.status == "completed" and ran.created_at >= failed.completed_at, describe(ran)
    # Both dependents were decided in the transaction that ended the upstream.
    assert executions(setup, strict) == [] and idle(setup, strict), "a failed upstream does not start a strict sync"


def test_a_join_runs_once_after_both_upstreams(setup: Setup):
    first = sync(setup, "join_first", MANUAL)
    second = sync(setup, "join_second", MANUAL)
    joined = sync(setup, "joined", after(first, second))
    setup.pt.model_sync.start(first)
    [run_first] = finished(setup, first)
    assert executions(setup, joined) == [] and idle(setup, joined), "one upstream of two starts nothing"
    setup.pt.model_sync.start(second)
    [run_joined] = finished(setup, joined)
    [run_second] = finished(setup, second)
    assert run_joined.status == "completed", describe(run_joined)
    assert run_joined.created_at >= max(run_first.completed_at, run_second.completed_at)
    assert idle(setup, joined)
    # The join starts over: the first upstream again is not enough.
    setup.pt.model_sync.start(first)
    finished(setup, first, count=2)
    assert len(executions(setup, joined)) == 1 and idle(setup, joined)


def test_a_sync_runs_after_a_bulk_sync(setup: Setup):
    bulk = setup.pt.bulk_sync.create(
        name=f"bulk {setup.suffix}", source_connection_id=setup.source_id,
        destination_connection_id=setup.destination_id,
        destination_configuration={"schema": f"sched_bulk_{setup.suffix}"}, mode="replicate", active=True,
        default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"),
        schemas=[SchemaConfiguration(id=f"public.{setup.table}")],
    ).data
    dependent = sync(setup, "after_bulk", after(bulk=(bulk.id,)))
    started = setup.pt.bulk_sync.start(bulk.id).data
    [ran] = finished(setup, dependent)
    ended = setup.pt.bulk_sync.executions.get(bulk.id, started.id).data
    assert ended.status == "completed" and ran.status == "completed", (ended, describe(ran))
    assert ran.created_at >= ended.completed_at, "the sync started after the bulk sync completed"
    assert idle(setup, dependent)
    refused(setup.pt.bulk_sync.delete, bulk.id, status=409, what="deleting a bulk sync a sync runs after")
    setup.pt.model_sync.delete(dependent)
    setup.pt.bulk_sync.delete(bulk.id)


def expect_422(call: Callable, field: str, says: str = "") -> None:
    refused(call, field=field, says=says, what=f"a schedule refused for {field}")


def test_runafter_validation(setup: Setup):
    a = sync(setup, "valid_a", MANUAL)
    b = sync(setup, "valid_b", after(a))
    body = setup.pt.model_sync.get(b).data
    update = lambda sync_id, schedule: setup.pt.model_sync.update(  # noqa: E731
        sync_id, name=body.name, mode=body.mode, schedule=schedule, target=body.target,
        identity=body.identity, fields=body.fields)
    expect_422(lambda: update(a, after(b)), "schedule.run_after", says="cycle")
    expect_422(lambda: update(b, after(b)), "schedule.run_after", says="cycle")
    missing = "00000000-0000-4000-8000-000000000000"
    expect_422(lambda: update(b, after(missing)), "schedule.run_after")
    expect_422(lambda: update(b, after(a, bulk=(missing,))), "schedule.run_after")
    expect_422(lambda: update(b, after("not-an-id")), "schedule.run_after")
    expect_422(lambda: update(b, Schedule(frequency="runafter")), "schedule.run_after")
    expect_422(lambda: update(b, Schedule(frequency="daily", run_after=RunAfter(sync_ids=[a]))), "schedule.run_after")
    expect_422(lambda: update(b, Schedule(frequency="dbtcloud")), "schedule.frequency")
    refused(setup.pt.model_sync.delete, a, status=409, says=body.name, what="deleting a sync another runs after")
    update(b, MANUAL)
    setup.pt.model_sync.delete(a)


def test_schedule_options_list_what_runs(setup: Setup):
    options = {o.frequency: o for o in setup.pt.model_sync.get_schedule_options().data.schedule_options}
    assert {"builder", "multi", "runafter"} <= set(options), sorted(options)
    assert "dbtcloud" not in options
    cron_fields = {"minute", "hour", "day_of_month", "month", "day_of_week"}
    assert set(options["builder"].configuration["properties"]) == cron_fields
    assert options["builder"].configuration["properties"]["minute"]["default"] == "0"
    assert "schedules" in options["multi"].configuration["required"]
    assert set(options["runafter"].configuration["properties"]) == {"run_after", "run_after_success_only"}
    assert all(o.label and o.description for o in options.values())


def next_match(start: dt.datetime, matches: Callable[[dt.datetime], bool]) -> dt.datetime:
    """The first whole minute strictly after `start` that `matches`."""
    at = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while not matches(at):
        at += dt.timedelta(minutes=1)
    return at


def scheduled(setup: Setup, name: str, schedule: Schedule, matches: Callable[[dt.datetime], bool]) -> str:
    """Creates a sync on `schedule` and checks its next execution time is the first minute
    `matches` (after the moment of the create)."""
    before = dt.datetime.now(dt.timezone.utc)
    sync_id = sync(setup, name, schedule)
    later = dt.datetime.now(dt.timezone.utc)
    expected = {next_match(before, matches), next_match(later, matches)}
    next_time = setup.pt.model_sync.get_status(sync_id).data.next_execution_time
    assert next_time in expected, f"{name}: next run {next_time}, expected one of {sorted(expected)}"
    return sync_id


def test_builder_and_multi_next_execution_times(setup: Setup):
    scheduled(setup, "builder", Schedule(frequency="builder", minute="0,30", hour="9-17", day_of_week="mon-fri"),
              lambda t: t.minute in (0, 30) and 9 <= t.hour <= 17 and t.weekday() < 5)
    multi = scheduled(
        setup, "multi",
        Schedule(frequency="multi", schedules=[{"frequency": "daily", "hour": "12", "minute": "0"},
                                               {"frequency": "builder", "minute": "15,45", "hour": "*/2"}]),
        lambda t: (t.hour, t.minute) == (12, 0) or (t.minute in (15, 45) and t.hour % 2 == 0))
    echoed = setup.pt.model_sync.get(multi).data.schedule
    assert echoed.frequency == "multi" and len(getattr(echoed, "schedules")) == 2, echoed


def test_schedule_fields_are_named_when_invalid(setup: Setup):
    create = lambda schedule: sync(setup, f"bad_{support.random_suffix()}", schedule)  # noqa: E731
    expect_422(lambda: create(Schedule(frequency="builder", hour="9-25")), "schedule.hour")
    expect_422(lambda: create(Schedule(frequency="builder", day_of_week="mon-funday")), "schedule.day_of_week")
    expect_422(lambda: create(Schedule(frequency="multi")), "schedule.schedules")
    expect_422(lambda: create(Schedule(frequency="multi", schedules=[{"frequency": "hourly"},
                                                                      {"frequency": "builder", "minute": "61"}])),
               "schedule.schedules[1].minute")
    expect_422(lambda: create(Schedule(frequency="multi", schedules=[{"frequency": "multi"}])),
               "schedule.schedules[0].frequency")
