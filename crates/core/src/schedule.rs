//! When scheduled subjects run next: the `schedules` table, one row per schedule of an active,
//! scheduled subject of every job kind (a model sync has one, a bulk sync a default one and
//! additional ones, each with the start options of its runs), and the Polytomic schedule that
//! says when.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{
    db::DbError,
    sync::{Schedule, filter::Invalid},
};

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
        entry
            .schedule
            .check("schedule", true)
            .map_err(|e| ReplaceError::Invalid(entry.schedule_id.clone(), e.message))?;
        let Some(next) = entry.schedule.next_after(now) else {
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

/// A schedule frequency Syncline runs, as `GET /api/syncs/schedules` lists it.
#[derive(Debug, Clone, Copy)]
pub struct Frequency {
    pub name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    /// The schedule fields it reads, each with its default (empty: none).
    pub fields: &'static [(&'static str, &'static str)],
    /// Whether it keeps a timetable of its own (what a `multi` schedule combines and a bulk
    /// sync schedule takes).
    pub timetable: bool,
}

/// The fields of a cron timetable, in cron's order.
const CRON_FIELDS: [&str; 5] = ["minute", "hour", "day_of_month", "month", "day_of_week"];

/// Every frequency Syncline runs (`dbtcloud` is refused).
pub const FREQUENCIES: &[Frequency] = &[
    Frequency {
        name: "manual",
        label: "Manual",
        description: "Only when started through the API or UI",
        fields: &[],
        timetable: true,
    },
    Frequency { name: "continuous", label: "Continuous", description: "Every minute", fields: &[], timetable: true },
    Frequency {
        name: "hourly",
        label: "Hourly",
        description: "Every hour at the given minute",
        fields: &[("minute", "0")],
        timetable: true,
    },
    Frequency {
        name: "daily",
        label: "Daily",
        description: "Every day at the given hour and minute (UTC)",
        fields: &[("minute", "0"), ("hour", "0")],
        timetable: true,
    },
    Frequency {
        name: "weekly",
        label: "Weekly",
        description: "Every week on the given day, hour and minute (UTC)",
        fields: &[("minute", "0"), ("hour", "0"), ("day_of_week", "Mon")],
        timetable: true,
    },
    Frequency {
        name: "custom",
        label: "Custom",
        description: "A cron schedule from the minute, hour, day_of_month, month and day_of_week fields (UTC)",
        fields: &[("minute", "*"), ("hour", "*"), ("day_of_month", "*"), ("month", "*"), ("day_of_week", "*")],
        timetable: true,
    },
    Frequency {
        name: "builder",
        label: "Schedule builder",
        description: "At the minutes, hours, days of the month, months and weekdays given, each a value, a list \
                      (0,30), a range (9-17, mon-fri) or a step (*/15) (UTC)",
        fields: &[("minute", "0"), ("hour", "*"), ("day_of_month", "*"), ("month", "*"), ("day_of_week", "*")],
        timetable: true,
    },
    Frequency {
        name: "multi",
        label: "Several schedules",
        description: "At the earliest next time of any of several schedules, each manual, continuous, hourly, \
                      daily, weekly, custom or builder",
        fields: &[("schedules", "")],
        timetable: false,
    },
    Frequency {
        name: "runafter",
        label: "After other syncs",
        description: "Once every listed model sync and bulk sync has finished a run since this sync's last run \
                      started (with run_after_success_only, only completed runs count)",
        fields: &[("run_after", ""), ("run_after_success_only", "false")],
        timetable: false,
    },
];

impl Schedule {
    /// The frequency (`manual` when absent).
    pub fn frequency(&self) -> &str {
        self.frequency.as_deref().filter(|f| !f.is_empty()).unwrap_or("manual")
    }

    /// The upstream ids of a `runafter` schedule: model syncs, then bulk syncs.
    pub fn run_after_ids(&self) -> (&[String], &[String]) {
        let run_after = self.run_after.as_ref();
        (
            run_after.and_then(|r| r.sync_ids.as_deref()).unwrap_or_default(),
            run_after.and_then(|r| r.bulk_sync_ids.as_deref()).unwrap_or_default(),
        )
    }

    /// Checks that the schedule at `at` (`schedule`, …) can run as it says (a timetable only,
    /// when `timetable_only`); the error names the field at fault. Which syncs a `runafter`
    /// schedule lists is the API's to check.
    pub fn check(&self, at: &str, timetable_only: bool) -> Result<(), Invalid> {
        let frequency = self.frequency();
        let allowed = FREQUENCIES.iter().filter(|f| f.timetable || !timetable_only);
        if !allowed.clone().any(|f| f.name == frequency) {
            let names: Vec<&str> = allowed.map(|f| f.name).collect();
            return Err(Invalid::new(
                format!("{at}.frequency"),
                format!("{at}.frequency {frequency:?} is not supported (use one of {})", names.join(", ")),
            ));
        }
        let only_with = |field: &str, set: bool, wanted: &str| match set && frequency != wanted {
            true => Err(Invalid::new(format!("{at}.{field}"), format!("{at}.{field} needs frequency {wanted}"))),
            false => Ok(()),
        };
        only_with("run_after", self.run_after.is_some(), "runafter")?;
        only_with("run_after_success_only", self.run_after_success_only == Some(true), "runafter")?;
        only_with("schedules", self.schedules.is_some(), "multi")?;
        match frequency {
            "runafter" => match self.run_after_ids() {
                ([], []) => Err(Invalid::new(
                    format!("{at}.run_after"),
                    format!("{at}.run_after must list at least one sync in sync_ids or bulk_sync_ids"),
                )),
                _ => Ok(()),
            },
            "multi" => match self.schedules.as_deref().unwrap_or_default() {
                [] => Err(Invalid::new(format!("{at}.schedules"), format!("{at}.schedules must list a schedule"))),
                schedules => {
                    schedules.iter().enumerate().try_for_each(|(i, s)| s.check(&format!("{at}.schedules[{i}]"), true))
                }
            },
            _ => match self.timetable(at)? {
                Some(timetable) if timetable.upcoming(Utc).next().is_none() => {
                    Err(Invalid::new(at, format!("{at} can never run (no date matches it)")))
                }
                _ => Ok(()),
            },
        }
    }

    /// The next run strictly after `now` of a [checked](Self::check) schedule: the earliest of
    /// a `multi` schedule's; `None` for manual and `runafter` schedules (a `runafter` sync is
    /// made due when its upstreams finish), and for a schedule that does not check.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.frequency() {
            "multi" => self.schedules.iter().flatten().filter_map(|s| s.next_after(now)).min(),
            _ => self.timetable("schedule").ok().flatten()?.after(&now).next(),
        }
    }

    /// The cron timetable of a frequency that keeps one (not manual, multi or runafter); the
    /// error names the field at fault.
    fn timetable(&self, at: &str) -> Result<Option<cron::Schedule>, Invalid> {
        let Some(frequency) = FREQUENCIES.iter().find(|f| f.name == self.frequency() && f.timetable) else {
            return Ok(None);
        };
        if frequency.name == "manual" {
            return Ok(None);
        }
        let given = [&self.minute, &self.hour, &self.day_of_month, &self.month, &self.day_of_week];
        let mut fields = Vec::with_capacity(CRON_FIELDS.len());
        for (name, given) in CRON_FIELDS.into_iter().zip(given) {
            let value = match frequency.fields.iter().find(|(field, _)| *field == name) {
                Some((_, default)) => given.as_deref().filter(|v| !v.is_empty()).unwrap_or(default),
                None => "*",
            };
            let invalid =
                |e: &str| Invalid::new(format!("{at}.{name}"), format!("{at}.{name} {value:?} is not valid: {e}"));
            let value = match name {
                "day_of_week" => days_of_week(value).map_err(|e| invalid(&e))?,
                _ => value.to_owned(),
            };
            // The field alone, so that the error names it.
            let alone: Vec<&str> = CRON_FIELDS.iter().map(|n| if *n == name { value.as_str() } else { "*" }).collect();
            cron::Schedule::from_str(&format!("0 {}", alone.join(" "))).map_err(|e| {
                // The crate's message ends with what is wrong, under the expression it quotes.
                invalid(e.to_string().lines().last().unwrap_or_default())
            })?;
            fields.push(value);
        }
        let expression = format!("0 {}", fields.join(" "));
        cron::Schedule::from_str(&expression)
            .map(Some)
            .map_err(|e| Invalid::new(at, format!("{at} is not valid ({e})")))
    }
}

/// A day-of-week field as cron has it (0 or 7 is Sunday, or names: `mon`, `monday`; lists,
/// ranges and steps) in the terms of the `cron` crate (1 is Sunday): the days it lists.
fn days_of_week(field: &str) -> Result<String, String> {
    const DAYS: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
    if field == "*" {
        return Ok(field.to_owned());
    }
    let day = |token: &str| -> Result<usize, String> {
        let lower = token.trim().to_ascii_lowercase();
        match DAYS.iter().position(|d| lower == *d || lower == d[..3]) {
            Some(n) => Ok(n),
            None => lower.parse::<usize>().ok().filter(|n| *n <= 7).ok_or_else(|| format!("{token:?} is not a day")),
        }
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                (range, step.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(|| format!("{step:?} is not a step"))?)
            }
            None => (item, 1),
        };
        let (first, last) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((first, last)) => (day(first)?, day(last)?),
            None if item.contains('/') => (day(range)?, 6),
            None => (day(range)?, day(range)?),
        };
        if first > last {
            return Err(format!("{range:?} runs backwards"));
        }
        (first..=last).step_by(step).for_each(|d| days[d % 7] = true);
    }
    let listed: Vec<String> = (0..7).filter(|d| days[*d]).map(|d| (d + 1).to_string()).collect();
    Ok(listed.join(","))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn schedule(frequency: &str, minute: Option<&str>, hour: Option<&str>) -> Schedule {
        Schedule {
            frequency: Some(frequency.into()),
            minute: minute.map(Into::into),
            hour: hour.map(Into::into),
            ..Schedule::default()
        }
    }

    fn parse(schedule: serde_json::Value) -> Schedule {
        serde_json::from_value(schedule).expect("a schedule")
    }

    /// Sunday 2026-11-22 10:15:30 UTC.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 15, 30).single().expect("time")
    }

    fn at(day: u32, h: u32, m: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).single().expect("time"))
    }

    #[test]
    fn computes_next_runs() {
        assert_eq!(schedule("manual", None, None).next_after(now()), None);
        assert_eq!(schedule("continuous", None, None).next_after(now()), at(22, 10, 16));
        assert_eq!(schedule("hourly", Some("5"), None).next_after(now()), at(22, 11, 5));
        assert_eq!(schedule("daily", Some("30"), Some("10")).next_after(now()), at(22, 10, 30));
        let custom = Schedule { minute: Some("*/10".into()), ..schedule("custom", None, None) };
        assert_eq!(custom.next_after(now()), at(22, 10, 20));
        let weekly = Schedule { day_of_week: Some("1".into()), ..schedule("weekly", Some("0"), Some("8")) };
        assert_eq!(weekly.next_after(now()), at(23, 8, 0), "day 1 is Monday");
    }

    #[test]
    fn builder_takes_lists_and_ranges() {
        let weekdays =
            parse(json!({"frequency": "builder", "minute": "0,30", "hour": "9-17", "day_of_week": "mon-fri"}));
        assert_eq!(weekdays.check("schedule", false), Ok(()));
        assert_eq!(weekdays.next_after(now()), at(23, 9, 0), "Sunday is skipped");
        assert_eq!(weekdays.next_after(at(23, 9, 0).expect("time")), at(23, 9, 30));
        assert_eq!(weekdays.next_after(at(23, 17, 30).expect("time")), at(24, 9, 0));
        let defaults = parse(json!({"frequency": "builder"}));
        assert_eq!(defaults.next_after(now()), at(22, 11, 0), "minute 0 of every hour");
        let weekend = parse(json!({"frequency": "builder", "hour": "6", "day_of_week": "6-7"}));
        assert_eq!(weekend.next_after(now()), at(28, 6, 0), "6-7 is Saturday and Sunday");
    }

    #[test]
    fn multi_runs_at_the_earliest_of_its_schedules() {
        let multi = parse(json!({"frequency": "multi", "schedules": [
            {"frequency": "daily", "hour": "12", "minute": "0"},
            {"frequency": "builder", "minute": "45", "hour": "10-11"},
            {"frequency": "manual"},
        ]}));
        assert_eq!(multi.check("schedule", false), Ok(()));
        assert_eq!(multi.next_after(now()), at(22, 10, 45));
        assert_eq!(multi.next_after(at(22, 11, 45).expect("time")), at(22, 12, 0));
    }

    #[test]
    fn names_the_field_at_fault() {
        let field = |schedule: serde_json::Value| parse(schedule).check("schedule", false).map_err(|e| e.field);
        assert_eq!(field(json!({"frequency": "dbtcloud"})), Err("schedule.frequency".into()));
        assert_eq!(field(json!({"frequency": "hourly", "minute": "61"})), Err("schedule.minute".into()));
        assert_eq!(field(json!({"frequency": "builder", "hour": "9-25"})), Err("schedule.hour".into()));
        assert_eq!(
            field(json!({"frequency": "builder", "day_of_week": "mon-funday"})),
            Err("schedule.day_of_week".into())
        );
        assert_eq!(
            field(json!({"frequency": "builder", "day_of_week": "fri-mon"})),
            Err("schedule.day_of_week".into())
        );
        assert_eq!(field(json!({"frequency": "builder", "month": "13"})), Err("schedule.month".into()));
        assert_eq!(
            field(json!({"frequency": "custom", "minute": "0", "hour": "0", "day_of_month": "30", "month": "2"})),
            Err("schedule".into()),
            "February 30 never comes"
        );
        assert_eq!(field(json!({"frequency": "multi"})), Err("schedule.schedules".into()));
        assert_eq!(
            field(
                json!({"frequency": "multi", "schedules": [{"frequency": "hourly"}, {"frequency": "builder", "minute": "x"}]})
            ),
            Err("schedule.schedules[1].minute".into())
        );
        assert_eq!(
            field(
                json!({"frequency": "multi", "schedules": [{"frequency": "runafter", "run_after": {"sync_ids": ["a"]}}]})
            ),
            Err("schedule.schedules[0].frequency".into()),
            "a multi schedule combines timetables"
        );
        assert_eq!(field(json!({"frequency": "runafter"})), Err("schedule.run_after".into()));
        assert_eq!(
            field(json!({"frequency": "runafter", "run_after": {"sync_ids": []}})),
            Err("schedule.run_after".into())
        );
        assert_eq!(
            field(json!({"frequency": "daily", "run_after": {"sync_ids": ["a"]}})),
            Err("schedule.run_after".into())
        );
        assert_eq!(
            field(json!({"frequency": "daily", "run_after_success_only": true})),
            Err("schedule.run_after_success_only".into())
        );
        assert_eq!(field(json!({"frequency": "hourly", "schedules": []})), Err("schedule.schedules".into()));
        assert_eq!(field(json!({"frequency": "runafter", "run_after": {"bulk_sync_ids": ["b"]}})), Ok(()));
    }

    #[test]
    fn runafter_has_no_timetable() {
        let runafter = parse(json!({"frequency": "runafter", "run_after": {"sync_ids": ["a"]}}));
        assert_eq!(runafter.next_after(now()), None);
    }

    #[test]
    fn translates_days_of_week() {
        assert_eq!(days_of_week("*"), Ok("*".into()));
        assert_eq!(days_of_week("0"), Ok("1".into()));
        assert_eq!(days_of_week("7,Mon"), Ok("1,2".into()));
        assert_eq!(days_of_week("mon-fri"), Ok("2,3,4,5,6".into()));
        assert_eq!(days_of_week("*/2"), Ok("1,3,5,7".into()));
        assert_eq!(days_of_week("1/3"), Ok("2,5".into()));
        assert!(days_of_week("8").is_err());
    }
}
