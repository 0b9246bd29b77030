//! Verified delivery: reading a writer's records back, on a connection of the verifier's own.
//! The records go, as the sync sent them, into a staging table typed like the records (so a
//! value the table cut to fit still differs), with their ordinal, and are compared with the
//! table's columns there.

use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::{Value as MyValue, prelude::Queryable};
use syncline_core::{
    connector::{
        ConnectorError, Context, Mismatch, MismatchKind, Operation, Operations, Verifier, WriteBatch, WriteRequest,
    },
    record::{Field, FieldType},
};

use super::{
    MysqlConfig,
    client::{self, Connection, guarded, quote_ident},
    destination::{Column, matched, parameters, run_chunked, target_filter},
    spelling::{self, Mysql},
    types,
};
use crate::sql::{LEVEL, ValueSpelling, Values, Verification, VerificationParts};

const VERIFY: &str = "syncline_verify";
const VERIFY_KEYS: &str = "syncline_verify_keys";

/// How a writer's records are read back.
pub(super) struct ReadBack {
    /// Where the verifier connects: the writer's database.
    connect: (Context, MysqlConfig),
    /// Creates the verifier's staging tables.
    create: Vec<String>,
    verification: Verification,
}

impl ReadBack {
    pub(super) fn new(
        connect: (Context, MysqlConfig),
        mariadb: bool,
        req: &WriteRequest,
        table: &str,
        columns: &[Column],
    ) -> Self {
        let definition = |name: String, field: &Field| {
            format!("{name} {}", types::column_definition(&field.field_type, false, mariadb))
        };
        let staged: Vec<String> =
            req.schema.fields.iter().enumerate().map(|(i, f)| definition(format!("c{i}"), f)).collect();
        let keys: Vec<String> =
            req.identity.iter().enumerate().map(|(n, i)| definition(format!("k{n}"), &req.schema.fields[*i])).collect();
        let create = [(VERIFY, staged), (VERIFY_KEYS, keys)]
            .into_iter()
            .map(|(name, columns)| {
                format!(
                    "create temporary table {name} (ord bigint not null, {}, {LEVEL} int) engine = InnoDB",
                    columns.join(", ")
                )
            })
            .collect();
        let values = Values::of(
            req,
            &ValueSpelling {
                staged: &|i| format!("s.c{i}"),
                replacement: &|_, value| spelling::constant(value),
                constant: &|_, value| spelling::constant(value),
                spelling: &Mysql,
            },
        );
        let differs = (0..values.targets.len())
            .filter(|i| !req.identity.contains(i))
            .map(|i| {
                let (target, expr) = (&values.targets[i], &values.exprs[i]);
                let quoted = quote_ident(target);
                let text = columns.iter().any(|c| &c.name == target && c.field_type == FieldType::Text);
                let differs = match (req.shaping.fill_only.contains(target), text) {
                    (true, _) => format!("t.{quoted} is null and ({expr}) is not null"),
                    (false, true) => format!("not (cast(({expr}) as binary) <=> cast(t.{quoted} as binary))"),
                    (false, false) => format!("not (({expr}) <=> t.{quoted})"),
                };
                (target.clone(), differs)
            })
            .collect();
        let identity: Vec<String> = req.identity.iter().map(|i| quote_ident(&req.targets[*i])).collect();
        let matches: Vec<String> = req.identity.iter().zip(&identity).map(|(i, t)| format!("t.{t} = s.c{i}")).collect();
        let key_matches: Vec<String> = identity.iter().enumerate().map(|(n, t)| format!("t.{t} = k.k{n}")).collect();
        let verification = Verification::new(VerificationParts {
            stage: VERIFY,
            keys: VERIFY_KEYS,
            table,
            matches: &matches.join(" and "),
            key_matches: &key_matches.join(" and "),
            matched: (!req.matching.is_plain()).then(|| {
                let (staged, key): (&dyn Fn(usize) -> String, &dyn Fn(usize) -> String) =
                    (&|n| format!("c{}", req.identity[n]), &|n| format!("k{n}"));
                (matched(req, "s", Some(staged)), matched(req, "k", Some(key)))
            }),
            identity_column: &identity[0],
            differs,
            target_filter: target_filter(req, "t."),
            mode: req.mode,
        });
        Self { connect, create, verification }
    }
}

/// A [`Verifier`] for a MySQL or MariaDB writer.
pub(super) struct MysqlVerifier {
    conn: Connection,
    read_back: Arc<ReadBack>,
}

impl MysqlVerifier {
    pub(super) async fn open(read_back: Arc<ReadBack>) -> Result<Self, ConnectorError> {
        let (ctx, config) = &read_back.connect;
        let mut conn = client::connect(ctx, config).await?;
        for create in &read_back.create {
            conn.query_drop(conn.ctx.deadlines.query, create).await?;
        }
        Ok(Self { conn, read_back })
    }
}

#[async_trait]
impl Verifier for MysqlVerifier {
    async fn verify(&mut self, batch: &WriteBatch) -> Result<Vec<Mismatch>, ConnectorError> {
        let verification = &self.read_back.verification;
        let deletes = batch.operations == Operations::All(Operation::Delete);
        let (stage, prefix, sql, before) = match deletes {
            true => (VERIFY_KEYS, "k", &verification.deletes, &verification.before_deletes),
            false => (VERIFY, "c", &verification.upserts, &verification.before_upserts),
        };
        // Records that do not decode were rejected when written: nothing to read back.
        let (rows, positions, _) = parameters(&batch.records);
        let numbered: Vec<Vec<MyValue>> = positions
            .iter()
            .zip(rows)
            .map(|(at, row)| std::iter::once(MyValue::Int(*at as i64)).chain(row).collect())
            .collect();
        let width = numbered.first().map_or(1, Vec::len);
        let group = format!("({})", vec!["?"; width].join(", "));
        let (guard, idle) = (self.conn.kill_on_drop(), self.conn.ctx.deadlines.idle);
        let conn = &mut self.conn.conn;
        let work = async {
            conn.query_drop(format!("delete from {stage}")).await?;
            let columns: Vec<String> = (1..width).map(|i| format!("{prefix}{}", i - 1)).collect();
            let insert = format!("insert into {stage} (ord, {}) values ", columns.join(", "));
            run_chunked(conn, &insert, &group, ", ", "", &numbered).await?;
            for statement in before {
                conn.query_drop(statement).await?;
            }
            conn.query::<mysql_async::Row, _>(sql.as_str()).await
        };
        let found = guarded(guard, idle, work).await?;
        let flag = |row: &mysql_async::Row, i: usize| row.get::<Option<i64>, _>(i).flatten().unwrap_or(0) != 0;
        let mismatches = found
            .iter()
            .map(|row| {
                let index = row.get::<Option<i64>, _>(0).flatten().unwrap_or_default() as usize;
                match deletes {
                    true => Mismatch { index, kind: MismatchKind::StillThere },
                    false => {
                        let differs: Vec<bool> = (2..row.len()).map(|i| flag(row, i)).collect();
                        verification.mismatch(index, flag(row, 1), &differs)
                    }
                }
            })
            .collect();
        Ok(mismatches)
    }
}
