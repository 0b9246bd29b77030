//! When scheduled subjects run next: the `schedules` table, one row per schedule of an active,
//! scheduled subject of every job kind (a model sync has one, a bulk sync a default one and
//! additional ones, each with the start options of its runs), and the Polytomic schedule that
//! says when.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{db::DbError, sync::Schedule};

/// The id of a subject's only (or default) schedule.
pub const DEFAULT: &str = "default";

/// Sets when `subject_id` of `kind` runs next on its one schedule (`None`: not on a schedule
/// any more).
pub async fn set(
    client: &impl GenericClient,
    (kind, subject_id, organization_id): (&str, Uuid, Uuid),
    schedule: &Schedule,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    match next_run_at {
        Some(next) => {
            let schedule = serde_json::to_value(schedule).expect("a schedule serializes");
            client
                .execute(
                    "insert into schedules (kind, subject_id, organization_id, schedule, next_run_at)
                     values ($1, $2, $3, $4, $5)
                     on conflict (kind, subject_id, schedule_id) do update set schedule = $4, next_run_at = $5",
                    &[&kind, &subject_id, &organization_id, &schedule, &next],
                )
                .await?
        }
        None => {
            client.execute("delete from schedules where kind = $1 and subject_id = $2", &[&kind, &subject_id]).await?
        }
    };
    Ok(())
}

/// One of several schedules of a subject: its id, when, and the options of the runs it starts.
#[derive(Debug, Clone)]
pub struct Entry {
    pub schedule_id: String,
    pub schedule: Schedule,
    pub options: Json,
}

/// Replaces every schedule of `subject_id` of `kind` with `entries` (none: not scheduled),
/// each next running after `now`. Fails naming the schedule when one cannot run.
pub async fn replace(
    client: &impl GenericClient,
    (kind, subject_id, organization_id): (&str, Uuid, Uuid),
    entries: &[Entry],
    now: DateTime<Utc>,
) -> Result<(), ReplaceError> {
    let ids: Vec<&str> = entries.iter().map(|e| e.schedule_id.as_str()).collect();
    client
        .execute(
            "delete from schedules where kind = $1 and subject_id = $2 and not schedule_id = any($3)",
            &[&kind, &subject_id, &ids],
        )
        .await?;
    for entry in entries {
        let next = entry.schedule.next_after(now).map_err(|e| ReplaceError::Invalid(entry.schedule_id.clone(), e))?;
        let Some(next) = next else {
            client
                .execute(
                    "delete from schedules where kind = $1 and subject_id = $2 and schedule_id = $3",
                    &[&kind, &subject_id, &entry.schedule_id],
                )
                .await?;
            continue;
        };
        let schedule = serde_json::to_value(&entry.schedule).expect("a schedule serializes");
        client
            .execute(
                "insert into schedules (kind, subject_id, organization_id, schedule_id, schedule, options, next_run_at)
                 values ($1, $2, $3, $4, $5, $6, $7)
                 on conflict (kind, subject_id, schedule_id) do update set schedule = $5, options = $6, next_run_at = $7",
                &[&kind, &subject_id, &organization_id, &entry.schedule_id, &schedule, &entry.options, &next],
            )
            .await?;
    }
    Ok(())
}

/// Why [`replace`] refused.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The schedule with this id cannot run; the message names the field.
    #[error("schedule {0}: {1}")]
    Invalid(String, String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ReplaceError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// A schedule whose run is due.
#[derive(Debug, Clone)]
pub struct Due {
    pub kind: String,
    pub subject_id: Uuid,
    pub organization_id: Uuid,
    pub schedule_id: String,
    pub schedule: Schedule,
    /// The start options of the runs it starts.
    pub options: Json,
}

/// Schedules of every kind whose next run is due, locked for this transaction (other
/// schedulers skip them), at most 100, the most overdue first.
pub async fn lock_due(tx: &impl GenericClient) -> Result<Vec<Due>, DbError> {
    let rows = tx
        .query(
            "select kind, subject_id, organization_id, schedule_id, schedule, options from schedules
             where next_run_at <= now() order by next_run_at for update skip locked limit 100",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Due {
                kind: row.try_get("kind")?,
                subject_id: row.try_get("subject_id")?,
                organization_id: row.try_get("organization_id")?,
                schedule_id: row.try_get("schedule_id")?,
                // A schedule that no longer parses runs no more (`next_after` of the default is none).
                schedule: serde_json::from_value(row.try_get("schedule")?).unwrap_or_default(),
                options: row.try_get("options")?,
            })
        })
        .collect()
}

/// Moves a due schedule's next run to `next` (`None`: it runs no more).
pub async fn advance(client: &impl GenericClient, due: &Due, next: Option<DateTime<Utc>>) -> Result<(), DbError> {
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&due.kind, &due.subject_id, &due.schedule_id];
    match next {
        Some(next) => {
            client
                .execute(
                    "update schedules set next_run_at = $4 where kind = $1 and subject_id = $2 and schedule_id = $3",
                    &[key[0], key[1], key[2], &next],
                )
                .await?
        }
        None => {
            client
                .execute("delete from schedules where kind = $1 and subject_id = $2 and schedule_id = $3", &key)
                .await?
        }
    };
    Ok(())
}

/// When `subject_id` of `kind` runs next (the soonest of its schedules), if it is on one.
pub async fn next_run_at(
    client: &impl GenericClient,
    kind: &str,
    subject_id: Uuid,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = client
        .query_one(
            "select min(next_run_at) as next from schedules where kind = $1 and subject_id = $2",
            &[&kind, &subject_id],
        )
        .await?;
    Ok(row.try_get("next")?)
}

/// Frequencies Syncline runs on its own (other Polytomic frequencies are rejected).
pub const FREQUENCIES: &[(&str, &str)] = &[
    ("manual", "Only when started through the API or UI"),
    ("continuous", "Every minute"),
    ("hourly", "Every hour at the given minute"),
    ("daily", "Every day at the given hour and minute (UTC)"),
    ("weekly", "Every week on the given day, hour and minute (UTC)"),
    ("custom", "A cron schedule from the minute, hour, day_of_month, month and day_of_week fields"),
];

impl Schedule {
    /// The next run strictly after `now`, or `None` for manual syncs. The error says which
    /// schedule field is wrong.
    pub fn next_after(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
        let field = |value: &Option<String>, default: &str| {
            value.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        let (minute, hour) = (field(&self.minute, "0"), field(&self.hour, "0"));
        let expression = match self.frequency.as_deref().unwrap_or("manual") {
            "manual" => return Ok(None),
            "continuous" => "0 * * * * *".to_owned(),
            "hourly" => format!("0 {minute} * * * *"),
            "daily" => format!("0 {minute} {hour} * * *"),
            "weekly" => format!("0 {minute} {hour} * * {}", field(&self.day_of_week, "Mon")),
            "custom" => format!(
                "0 {} {} {} {} {}",
                field(&self.minute, "*"),
                field(&self.hour, "*"),
                field(&self.day_of_month, "*"),
                field(&self.month, "*"),
                field(&self.day_of_week, "*")
            ),
            other => {
                let known: Vec<&str> = FREQUENCIES.iter().map(|(f, _)| *f).collect();
                return Err(format!("schedule.frequency {other:?} is not supported (use one of {})", known.join(", ")));
            }
        };
        let cron = cron::Schedule::from_str(&expression).map_err(|e| format!("schedule is not valid ({e})"))?;
        match cron.after(&now).next() {
            Some(next) => Ok(Some(next)),
            None => Err("schedule can never run (no date matches it)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn schedule(frequency: &str, minute: Option<&str>, hour: Option<&str>) -> Schedule {
        Schedule {
            frequency: Some(frequency.into()),
            minute: minute.map(Into::into),
            hour: hour.map(Into::into),
            ..Schedule::default()
        }
    }

    #[test]
    fn computes_next_runs() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 15, 30).single().expect("time");
        let at = |h, m| Some(Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).single().expect("time"));
        assert_eq!(schedule("manual", None, None).next_after(now), Ok(None));
        assert_eq!(schedule("continuous", None, None).next_after(now), Ok(at(10, 16)));
        assert_eq!(schedule("hourly", Some("5"), None).next_after(now), Ok(at(11, 5)));
        assert_eq!(schedule("daily", Some("30"), Some("10")).next_after(now), Ok(at(10, 30)));
        let custom = Schedule { minute: Some("*/10".into()), ..schedule("custom", None, None) };
        assert_eq!(custom.next_after(now), Ok(at(10, 20)));
    }

    #[test]
    fn rejects_schedules_that_never_fire() {
        let february_30 = Schedule {
            day_of_month: Some("30".into()),
            month: Some("2".into()),
            ..schedule("custom", Some("0"), Some("0"))
        };
        assert_eq!(february_30.next_after(Utc::now()), Err("schedule can never run (no date matches it)".into()));
    }

    #[test]
    fn rejects_bad_schedules() {
        assert!(schedule("dbtcloud", None, None).next_after(Utc::now()).unwrap_err().contains("not supported"));
        assert!(
            schedule("hourly", Some("61"), None)
                .next_after(Utc::now())
                .unwrap_err()
                .starts_with("schedule is not valid")
        );
    }
}
