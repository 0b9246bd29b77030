//! An event route's delivery (kind `event_delivery`, its subject the route): runs for as long
//! as the route exists, taking micro-batches of its source's events ([`batch`]) past the
//! route's position, delivering each to the route's warehouse ([`deliver`]) and then recording,
//! in one state-database transaction, the route's new position, its counts and the batch's
//! dead letters ([`store`]).
//!
//! Each route runs on its own, so a slow or failing destination delays only its own routes.
//! Delivery is at least once into an idempotent warehouse, so exactly once in effect: a worker
//! killed after the warehouse committed a batch and before its position was recorded leaves a
//! batch that the next run loads again, adding nothing (its events are counted as duplicates).
//! A route with a lookup model reads it into its copy when it starts and every
//! `EVENTS_LOOKUP_REFRESH_MINUTES` ([`lookup`]).
//!
//! The route's `schedules` row (`continuous`) starts a new run within a minute of one that
//! ended; a dead worker's run is taken over when its lease expires.

mod batch;
mod deliver;
mod lookup;
mod store;
mod users;

use std::time::Instant;

use deliver::Delivered;
use serde_json::{Map, Value as Json};
use store::Route;
use syncline_core::{
    config::EventDelivery as Settings,
    connector::{ConnectorError, EventWarehouse},
    events::store::StoredEvent,
    executions::{self, Claim, Counts, Outcome},
};
use tokio::sync::watch;

use crate::{
    Services, connections,
    kind::{JobKind, RunEnd, Stop, Unchanged},
};

/// The delivery of one event route.
pub struct EventDelivery;

impl JobKind for EventDelivery {
    const KIND: &'static str = executions::EVENT_DELIVERY;
    /// It runs for as long as its route exists: it would hold a slot for good.
    const TAKES_SLOT: bool = false;
    type Effects = Unchanged;

    fn run(
        services: &Services,
        claim: &Claim,
        _worker: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> impl Future<Output = RunEnd<Unchanged>> + Send {
        run(services, claim, stop)
    }

    fn leftovers(_: &Claim, _: Option<&Unchanged>) -> Vec<String> {
        vec![]
    }
}

/// Runs the claimed delivery until its route is deleted or `stop` says otherwise.
async fn run(services: &Services, claim: &Claim, mut stop: watch::Receiver<Option<Stop>>) -> RunEnd<Unchanged> {
    let mut counts = Counts::default();
    let stopped = tokio::select! {
        biased;
        stop = stop.wait_for(Option::is_some) => Ok(stop.ok().and_then(|s| *s).unwrap_or(Stop::Lost)),
        end = deliver_while_routed(services, claim, &mut counts) => Err(end),
    };
    match stopped {
        Ok(stop) => RunEnd::Stopped { stop, counts },
        Err(Ok(())) => RunEnd::Finished { outcome: Outcome::Completed(Unchanged), counts },
        Err(Err(e)) => RunEnd::Finished { outcome: Outcome::Failed { error: e.message, class: e.class }, counts },
    }
}

/// Delivers the claimed route's events until the route is deleted, starting over with the
/// route's new settings whenever it changes.
async fn deliver_while_routed(services: &Services, claim: &Claim, counts: &mut Counts) -> Result<(), ConnectorError> {
    let pool = &services.pool;
    while let Some(route) = store::route(pool, claim.subject_id).await? {
        deliver_until_changed(services, &route, counts).await?;
    }
    Ok(())
}

/// Delivers `route`'s events until the route is changed or deleted.
async fn deliver_until_changed(services: &Services, route: &Route, counts: &mut Counts) -> Result<(), ConnectorError> {
    let pool = &services.pool;
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let (connector, config) = connections::open(services, &route.connection, "target")?;
    let warehouse = connector.event_warehouse(&ctx, &config)?;
    let mut cursors = store::cursors(pool, route.id).await?;
    let Settings { batch_rows, batch_age, .. } = services.event_delivery;
    let bounds = batch::Bounds { rows: batch_rows, age: batch_age };
    let mut refreshed: Option<Instant> = None;
    loop {
        if let Some(lookup) = &route.lookup
            && refreshed.is_none_or(|at| at.elapsed() >= services.event_delivery.lookup_refresh)
        {
            // A model that cannot be read leaves the copy as it was: events are not held back.
            match lookup::refresh(services, (route.organization_id, route.id), lookup).await {
                Ok(rows) => tracing::info!(route_id = %route.id, rows, "lookup model read"),
                Err(e) => tracing::warn!(route_id = %route.id, error = %e.message, "cannot read the lookup model"),
            }
            refreshed = Some(Instant::now());
        }
        let events = batch::next(pool, route.source_id, &cursors, bounds).await?;
        if !events.is_empty() {
            let outcome = deliver_events(services, warehouse.as_ref(), route, &events).await?;
            if !store::record(pool, route, &events, &outcome).await? {
                return Ok(());
            }
            cursors.extend(store::ends(&events));
            tally(counts, events.len(), &outcome);
        }
        let (letters, replays) = store::replays(pool, route.id, batch_rows as i64).await?;
        if !replays.is_empty() {
            let outcome = deliver_events(services, warehouse.as_ref(), route, &replays).await?;
            store::record_replay(pool, route.id, &letters, &outcome).await?;
            tally(counts, replays.len(), &outcome);
        }
        if store::version(pool, route.id).await? != Some(route.version) {
            return Ok(());
        }
    }
}

/// Delivers `events` of `route`: their identify traits taken in, their rows laid out and
/// enriched, then loaded.
async fn deliver_events(
    services: &Services,
    warehouse: &dyn EventWarehouse,
    route: &Route,
    events: &[StoredEvent],
) -> Result<Delivered, ConnectorError> {
    let pool = &services.pool;
    let messages = deliver::parse(events);
    let readable: Vec<&Map<String, Json>> = messages.iter().filter_map(|m| m.as_ref().ok()).collect();
    users::absorb(pool, (route.organization_id, route.source_id), &readable).await?;
    let traits = match route.enrichment.is_empty() {
        true => users::Traits::new(),
        false => users::lookup(pool, route.organization_id, &readable).await?,
    };
    let looked_up = match route.lookup.is_some() {
        true => lookup::values(pool, route.id, &readable).await?,
        false => users::Traits::new(),
    };
    let rows = deliver::lay_out(route, &messages, (&traits, &looked_up));
    Ok(deliver::deliver(warehouse, route, rows, services.event_delivery.retry_for).await)
}

/// Adds what delivering `events` events came to to the run's counts.
fn tally(counts: &mut Counts, events: usize, outcome: &Delivered) {
    counts.read += events as i64;
    counts.inserted += outcome.delivered;
    counts.written += outcome.delivered;
    counts.errors += outcome.failed.len() as i64;
}
