"""Sync error emails through the official Polytomic SDK, received by a real SMTP server:

* `notifications.get/set_global_error_subscribers` and the subscribers and
  `notify_on_record_errors` of `model_sync.error_handling`, with 422s naming what is wrong;
* a sync's first failure is emailed to the global and the sync's subscribers, naming the sync,
  the execution and the error with a link; a second failure is not; the recovery is;
* a run with record errors is emailed only for a sync that asks for it;
* a bulk sync's failure is emailed to its own subscribers (`bulk_sync.error_handling`) too;
* a run longer than `LONGSYNC_THRESHOLD` (15 s here) is emailed once, while it runs.
"""

from __future__ import annotations

import time

from polytomic import BulkSyncDefaultScheduleRequest, SchemaConfiguration
from polytomic.types import GlobalErrorSubscribersResponse

import support
from test_bulk_sync_api import refused
from test_model_sync_api import Setup, create_sync, destination_table, setup  # noqa: F401 (the fixture)
from test_bulk_sync_flow import wait as wait_for_bulk
from test_model_sync_flow import EXECUTION_TIMEOUT_S, wait_for_execution

GLOBAL = "oncall@example.com"
OWNER = "owner@example.com"


def run(setup: Setup, sync_id: str) -> str:
    started = setup.pt.model_sync.start(sync_id).data
    return wait_for_execution(setup.pt, sync_id, started.id, EXECUTION_TIMEOUT_S).status


def emails_about(mailbox, sync_name: str, count: int, wait: float = 20.0) -> list:
    """The emails naming `sync_name`, once `count` arrived (or `wait` seconds passed)."""
    box, _ = mailbox
    deadline = time.monotonic() + wait
    while True:
        found = [(to, m) for to, m in box.messages() if sync_name in m["Subject"]]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_subscribers_round_trip_and_refusals(setup: Setup):
    pt = setup.pt
    answer = pt.notifications.set_global_error_subscribers(emails=[GLOBAL, GLOBAL])
    assert isinstance(answer, GlobalErrorSubscribersResponse) and answer.emails == [GLOBAL], answer
    assert pt.notifications.get_global_error_subscribers().emails == [GLOBAL]
    refused(pt.notifications.set_global_error_subscribers, emails=["nobody"], field="emails[0]",
            what="a subscriber that is no address")
    sync_id = create_sync(setup, destination_table(setup, f"mail_rt_{setup.suffix}"))
    handling = pt.model_sync.error_handling.update(sync_id, subscribers=[OWNER], notify_on_record_errors=True).data
    assert (handling.subscribers, handling.notify_on_record_errors) == ([OWNER], True), handling
    assert pt.model_sync.error_handling.get(sync_id).data.subscribers == [OWNER]
    refused(pt.model_sync.error_handling.update, sync_id, warning_notifications=True, field="warning_notifications",
            what="warning notifications")


def test_failure_is_emailed_once_and_the_recovery_too(setup: Setup, mailbox):
    setup.pt.notifications.set_global_error_subscribers(emails=[GLOBAL])
    table = f"mail_fail_{setup.suffix}"
    people = f"(select * from {setup.people} where email is not null) p"
    sync_id = create_sync(setup, destination_table(setup, table), people=people)
    setup.pt.model_sync.error_handling.update(sync_id, subscribers=[OWNER])
    name = setup.pt.model_sync.get(sync_id).data.name
    assert run(setup, sync_id) == "completed"
    with setup.server.connect(setup.server.destination_db) as conn:
        conn.execute(f"alter table {table} rename to {table}_gone")
    assert run(setup, sync_id) == "failed"
    failed = emails_about(mailbox, name, 1)
    assert len(failed) == 1, failed
    recipients, message = failed[0]
    assert sorted(recipients) == sorted([GLOBAL, OWNER]), recipients
    assert "failed" in message["Subject"], message["Subject"]
    text = message.get_payload(decode=True).decode()
    last = setup.pt.model_sync.get_status(sync_id).data.last_execution.id
    assert last in text and table in text and f"{setup.server.base_url}/api/syncs/{sync_id}" in text, text

    assert run(setup, sync_id) == "failed"
    with setup.server.connect(setup.server.destination_db) as conn:
        conn.execute(f"alter table {table}_gone rename to {table}")
    assert run(setup, sync_id) == "completed"
    emails = emails_about(mailbox, name, 2)
    assert [m["Subject"] for _, m in emails] == [failed[0][1]["Subject"], f'Syncline: Sync "{name}" recovered'], \
        "the second failure sends nothing, the recovery does"


def test_record_errors_are_emailed_when_the_sync_asks(setup: Setup, mailbox):
    setup.pt.notifications.set_global_error_subscribers(emails=[GLOBAL])
    quiet = create_sync(setup, destination_table(setup, f"mail_quiet_{setup.suffix}"))
    loud = create_sync(setup, destination_table(setup, f"mail_loud_{setup.suffix}"))
    setup.pt.model_sync.error_handling.update(quiet, subscribers=[OWNER])
    setup.pt.model_sync.error_handling.update(loud, subscribers=[OWNER], notify_on_record_errors=True)
    assert run(setup, quiet) == "completed_with_errors" and run(setup, loud) == "completed_with_errors"
    loud_name, quiet_name = (setup.pt.model_sync.get(s).data.name for s in (loud, quiet))
    emails = emails_about(mailbox, loud_name, 1)
    assert len(emails) == 1 and "record errors" in emails[0][1]["Subject"], emails
    assert sorted(emails[0][0]) == sorted([GLOBAL, OWNER]), emails[0][0]
    assert emails_about(mailbox, quiet_name, 1, wait=3.0) == [], "a sync that does not ask sends none"


def test_a_bulk_sync_failure_is_emailed_to_its_subscribers(setup: Setup, mailbox):
    setup.pt.notifications.set_global_error_subscribers(emails=[GLOBAL])
    server, suffix = setup.server, support.random_suffix()
    source_db, destination_db = f"mail_bulk_src_{suffix}", f"mail_bulk_dst_{suffix}"
    support.create_databases(server.dsn, [source_db, destination_db])
    try:
        with server.connect(source_db) as conn:
            conn.execute("create table items (id int primary key, v text); insert into items values (1, 'one')")
        src, dst = (setup.pt.connections.create(name=f"bulk {db}", type="postgresql",
                                                configuration=server.postgres_configuration(db, "pw")).data
                    for db in (source_db, destination_db))
        name = f"bulk mail {suffix}"
        sync = setup.pt.bulk_sync.create(
            name=name, source_connection_id=src.id, destination_connection_id=dst.id,
            destination_configuration={"schema": "public"}, mode="replicate", active=True,
            default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"),
            schemas=[SchemaConfiguration(id="public.items")]).data
        setup.pt.bulk_sync.error_handling.update(sync.id, subscribers=[OWNER])
        with server.connect(source_db) as conn:
            conn.execute("drop table items")
        started = setup.pt.bulk_sync.start(sync.id).data
        assert wait_for_bulk(setup.pt, sync.id, started.id).status == "failed"
        emails = emails_about(mailbox, name, 1)
        assert len(emails) == 1 and f'Bulk sync "{name}" failed' in emails[0][1]["Subject"], emails
        assert sorted(emails[0][0]) == sorted([GLOBAL, OWNER]), emails[0][0]
    finally:
        support.drop_databases(server.dsn, [source_db, destination_db])


def test_a_long_run_is_emailed_once_while_it_runs(setup: Setup, mailbox):
    setup.pt.notifications.set_global_error_subscribers(emails=[GLOBAL])
    slow = f"{setup.people} p cross join (select pg_sleep(22)) s"
    sync_id = create_sync(setup, destination_table(setup, f"mail_slow_{setup.suffix}"), people=slow)
    name = setup.pt.model_sync.get(sync_id).data.name
    started = setup.pt.model_sync.start(sync_id).data
    emails = emails_about(mailbox, name, 1, wait=40.0)
    assert setup.pt.model_sync.executions.get(sync_id, started.id).data.status == "running", "emailed while running"
    subject = " ".join(str(emails[0][1]["Subject"]).split())  # unfolded
    assert len(emails) == 1 and "has been running for over 0.25 minutes" in subject, subject
    assert sorted(emails[0][0]) == [GLOBAL], emails[0][0]
    wait_for_execution(setup.pt, sync_id, started.id, EXECUTION_TIMEOUT_S)
    assert len(emails_about(mailbox, name, 2, wait=2.0)) == 1, "one email per execution, not one per check"
    listed = {e.type for e in setup.pt.events.list(limit=100).data}
    assert not any("long_running" in t for t in listed), "events.list shows only documented types"
