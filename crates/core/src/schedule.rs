//! When scheduled subjects run next: the `schedules` table, one row per active, scheduled
//! subject of every job kind, and the Polytomic schedule that says when.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::{db::DbError, sync::Schedule};

/// Sets when `subject_id` of `kind` runs next (`None`: not on a schedule any more).
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
                     on conflict (kind, subject_id) do update set schedule = $4, next_run_at = $5",
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

/// A subject whose run is due.
#[derive(Debug, Clone)]
pub struct Due {
    pub kind: String,
    pub subject_id: Uuid,
    pub organization_id: Uuid,
    pub schedule: Schedule,
}

/// Subjects of every kind whose next run is due, locked for this transaction (other schedulers
/// skip them), at most 100, the most overdue first.
pub async fn lock_due(tx: &impl GenericClient) -> Result<Vec<Due>, DbError> {
    let rows = tx
        .query(
            "select kind, subject_id, organization_id, schedule from schedules
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
                // A schedule that no longer parses runs no more (`next_after` of the default is none).
                schedule: serde_json::from_value(row.try_get("schedule")?).unwrap_or_default(),
            })
        })
        .collect()
}

/// When `subject_id` of `kind` runs next, if it is on a schedule.
pub async fn next_run_at(
    client: &impl GenericClient,
    kind: &str,
    subject_id: Uuid,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = client
        .query_opt("select next_run_at from schedules where kind = $1 and subject_id = $2", &[&kind, &subject_id])
        .await?;
    Ok(row.map(|r| r.try_get("next_run_at")).transpose()?)
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
