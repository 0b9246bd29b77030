//! Verified delivery: reading a writer's records back, on a connection of the verifier's own.
//!
//! Two ways, the second deciding: when every compared column stores values in the records'
//! own binary format and nothing reshapes them, each batch's identities are staged and the
//! rows they match are `COPY`ed back and compared byte for byte with what was sent. A record
//! that reads back identical is verified; any other (missing, or with a value spelled
//! differently, say a jsonb object whose keys were reordered) is staged whole and compared in
//! SQL, as the column's type compares values, which decides. Without the byte comparison
//! every record goes the SQL way.
//!
//! An integer identity whose values in a batch are dense (a first run writes the model in
//! identity order) is read back as one index range, which costs a fraction of looking each
//! record up.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use syncline_core::{
    connector::{ConnectorError, Context, Mismatch, MismatchKind, Operation, Operations, Verifier, WriteBatch},
    record::{RecordBatch, tuple_len, tuple_values},
};

use super::{
    PostgresConfig,
    client::{self, Connection},
    copy,
};
use crate::sql::Verification;

/// The staging table of records compared in SQL, numbered `ord` in the order they come.
pub(super) const VERIFY: &str = "syncline_verify";
/// The staging table of identities (`k0, k1, …`), each with the `ord` of its record.
pub(super) const VERIFY_KEYS: &str = "syncline_verify_keys";

/// How a writer's records are read back.
pub(super) struct ReadBack {
    /// Where the verifier connects: the writer's database.
    pub(super) connect: (Context, PostgresConfig),
    /// Creates the verifier's staging tables.
    pub(super) create: String,
    /// The SQL comparison, which decides.
    pub(super) verification: Verification,
    /// The record fields of the identity, in order.
    pub(super) identity: Vec<usize>,
    /// `COPY`s into [`VERIFY`] and [`VERIFY_KEYS`].
    pub(super) copy_records: String,
    pub(super) copy_keys: String,
    /// The byte comparison, when the records are written as sent.
    pub(super) bytewise: Option<Bytewise>,
}

/// Reading rows back for a byte comparison.
pub(super) struct Bytewise {
    /// `copy (select k.ord, <found>, <columns>… from keys left join table) to stdout`.
    pub(super) copy_out: String,
    /// With a single integer identity: `select t.<identity>, <columns>… from table as t
    /// where t.<identity> between `, to which the range and `) to stdout` are added.
    pub(super) range: Option<String>,
    /// For each column read back after `ord` and the found flag: the record field it holds,
    /// and whether jsonb's version byte comes before the JSON text sent.
    pub(super) fields: Vec<(usize, bool)>,
}

/// A [`Verifier`] for a PostgreSQL writer.
pub(super) struct PostgresVerifier {
    conn: Connection,
    read_back: Arc<ReadBack>,
}

impl PostgresVerifier {
    pub(super) async fn open(read_back: Arc<ReadBack>) -> Result<Self, ConnectorError> {
        let (ctx, config) = &read_back.connect;
        let conn = client::connect(ctx, config).await?;
        conn.interactive(conn.client.batch_execute(&read_back.create)).await?;
        Ok(Self { conn, read_back })
    }

    /// The positions of the records of `records` that do not read back byte for byte as sent.
    async fn suspects(&self, bytewise: &Bytewise, records: &RecordBatch) -> Result<Vec<usize>, ConnectorError> {
        let client = &self.conn.client;
        let dense = bytewise.range.as_ref().zip(dense_ids(records, self.read_back.identity[0]));
        let work = async {
            let (copy_out, locate) = match dense {
                Some((range, (ids, (low, high)))) => {
                    (format!("copy ({range}{low} and {high}) to stdout (format binary)"), Locate::ById(ids))
                }
                None => {
                    let keys = numbered(records, &self.read_back.identity);
                    copy::copy_in(client, &self.read_back.copy_keys, keys).await?;
                    (bytewise.copy_out.clone(), Locate::Ordinal)
                }
            };
            // A batch is small beside the table: look each record up by its identity rather
            // than scanning the table for every batch.
            client.batch_execute("begin; set local enable_hashjoin = off; set local enable_mergejoin = off").await?;
            let rows = client.copy_out(copy_out.as_str()).await?;
            let mut comparison = Comparison::new(bytewise, records, locate);
            futures::pin_mut!(rows);
            while let Some(chunk) = rows.next().await {
                comparison.feed(&chunk?);
            }
            client.batch_execute(&format!("commit; truncate {VERIFY_KEYS}")).await?;
            Ok(comparison)
        };
        let comparison = self.conn.run(self.conn.ctx.deadlines.idle, work).await?;
        comparison.suspects()
    }

    /// Stages `records` (or, for deletes, their identities) and compares them in SQL.
    async fn compared(&self, records: &RecordBatch, deletes: bool) -> Result<Vec<Mismatch>, ConnectorError> {
        let read_back = &self.read_back;
        let verification = &read_back.verification;
        let (stage, sql, before) = match deletes {
            true => (VERIFY_KEYS, &verification.deletes, &verification.before_deletes),
            false => (VERIFY, &verification.upserts, &verification.before_upserts),
        };
        let client = &self.conn.client;
        let work = async {
            match deletes {
                true => {
                    let all: Vec<usize> = (0..records.schema().fields.len()).collect();
                    copy::copy_in(client, &read_back.copy_keys, numbered(records, &all)).await?;
                }
                false => copy::copy_in(client, &read_back.copy_records, records.data().clone()).await?,
            }
            client.batch_execute("begin; set local enable_hashjoin = off; set local enable_mergejoin = off").await?;
            for statement in before {
                client.batch_execute(statement).await?;
            }
            let rows = client.query(sql.as_str(), &[]).await;
            client.batch_execute(&format!("commit; truncate {stage} restart identity")).await?;
            rows
        };
        let rows = self.conn.run(self.conn.ctx.deadlines.idle, work).await?;
        rows.iter()
            .map(|row| {
                let index = row.try_get::<_, i64>(0)? as usize;
                if deletes {
                    return Ok(Mismatch { index, kind: MismatchKind::StillThere });
                }
                let differs = (2..row.len()).map(|i| row.try_get::<_, bool>(i)).collect::<Result<Vec<_>, _>>()?;
                Ok(verification.mismatch(index, row.try_get(1)?, &differs))
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(|e| client::error(&e))
    }
}

#[async_trait]
impl Verifier for PostgresVerifier {
    async fn verify(&mut self, batch: &WriteBatch) -> Result<Vec<Mismatch>, ConnectorError> {
        let records = &batch.records;
        if batch.operations == Operations::All(Operation::Delete) {
            return self.compared(records, true).await;
        }
        let Some(bytewise) = &self.read_back.bytewise else { return self.compared(records, false).await };
        let suspects = self.suspects(bytewise, records).await?;
        if suspects.is_empty() {
            return Ok(Vec::new());
        }
        let mut mismatches = self.compared(&records.select(&suspects), false).await?;
        for mismatch in &mut mismatches {
            mismatch.index = suspects[mismatch.index];
        }
        Ok(mismatches)
    }
}

/// The values of fields `at` of each record, then the record's position, as `COPY` tuples.
fn numbered(records: &RecordBatch, at: &[usize]) -> Bytes {
    let mut out = BytesMut::with_capacity(records.data().len() / records.schema().fields.len().max(1) + 16);
    let mut values = Vec::new();
    for (ord, record) in records.records().enumerate() {
        values.clear();
        values.extend(record.raw_values());
        out.put_i16(at.len() as i16 + 1);
        for value in at.iter().map(|i| values.get(*i).copied().flatten()) {
            match value {
                Some(value) => {
                    out.put_i32(value.len() as i32);
                    out.put_slice(value);
                }
                None => out.put_i32(-1),
            }
        }
        out.put_i32(8);
        out.put_i64(ord as i64);
    }
    out.freeze()
}

/// The integer identities (field `at`) of `records` with the position of each, and their
/// lowest and highest, when they are dense: the range holds at most twice as many values.
fn dense_ids(records: &RecordBatch, at: usize) -> Option<(HashMap<i64, usize>, (i64, i64))> {
    let mut ids = HashMap::with_capacity(records.len());
    let (mut low, mut high) = (i64::MAX, i64::MIN);
    for (ord, record) in records.records().enumerate() {
        let id = integer(record.raw_values().nth(at)??)?;
        (low, high) = (low.min(id), high.max(id));
        ids.insert(id, ord);
    }
    let width = i128::from(high) - i128::from(low) + 1;
    (!ids.is_empty() && width <= 2 * records.len() as i128).then_some((ids, (low, high)))
}

/// The value of a `smallint`, `integer` or `bigint` in binary format.
fn integer(value: &[u8]) -> Option<i64> {
    Some(match value.len() {
        2 => i64::from(i16::from_be_bytes(value.try_into().ok()?)),
        4 => i64::from(i32::from_be_bytes(value.try_into().ok()?)),
        8 => i64::from_be_bytes(value.try_into().ok()?),
        _ => return None,
    })
}

/// How a row read back names its record.
enum Locate {
    /// By the position staged with the record's identity, then whether a row matched.
    Ordinal,
    /// By the record's integer identity; rows of other records in the range are skipped.
    ById(HashMap<i64, usize>),
}

/// Rows read back, compared with the records sent as they arrive.
struct Comparison<'a> {
    bytewise: &'a Bytewise,
    locate: Locate,
    records: &'a RecordBatch,
    /// Unparsed bytes of the `COPY` stream, its header first.
    buf: BytesMut,
    header_skipped: bool,
    seen: Vec<bool>,
    suspects: Vec<usize>,
    malformed: Option<String>,
}

impl<'a> Comparison<'a> {
    fn new(bytewise: &'a Bytewise, records: &'a RecordBatch, locate: Locate) -> Self {
        let seen = vec![false; records.len()];
        let (buf, header_skipped, suspects, malformed) = (BytesMut::new(), false, vec![], None);
        Self { bytewise, locate, records, buf, header_skipped, seen, suspects, malformed }
    }

    /// Compares the complete rows `bytes` ends.
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if !self.header_skipped {
            if self.buf.len() < copy::HEADER_LEN {
                return;
            }
            let _ = self.buf.split_to(copy::HEADER_LEN);
            self.header_skipped = true;
        }
        let columns = self.bytewise.fields.len() + if matches!(self.locate, Locate::Ordinal) { 2 } else { 1 };
        while !copy::is_trailer(&self.buf) {
            match tuple_len(&self.buf, columns) {
                Ok(Some(len)) => {
                    let row = self.buf.split_to(len);
                    self.row(&row);
                }
                Ok(None) => break,
                Err(e) => {
                    self.malformed.get_or_insert(e.to_string());
                    self.buf.clear();
                    break;
                }
            }
        }
    }

    /// Compares one row read back: its record's position and whether it was found, or its
    /// identity, then the compared columns.
    fn row(&mut self, row: &[u8]) {
        let mut values = tuple_values(row);
        let first = values.next().flatten();
        let (ord, found) = match &self.locate {
            Locate::Ordinal => {
                let ord = first.and_then(|v| <[u8; 8]>::try_from(v).ok()).map(i64::from_be_bytes);
                (ord.and_then(|o| usize::try_from(o).ok()), values.next().flatten() == Some(&[1]))
            }
            Locate::ById(ids) => match first.and_then(integer) {
                Some(id) => match ids.get(&id) {
                    Some(ord) => (Some(*ord), true),
                    None => return,
                },
                None => (None, false),
            },
        };
        let Some(ord) = ord.filter(|o| *o < self.records.len()) else {
            self.malformed.get_or_insert("a row read back has no record".into());
            return;
        };
        let sent: Vec<Option<&[u8]>> = self.records.record(ord).raw_values().collect();
        let same = found
            && self.bytewise.fields.iter().zip(values).all(|((i, versioned), back)| match (sent[*i], back) {
                (None, None) => true,
                (Some(sent), Some(back)) if *versioned => back.get(1..) == Some(sent),
                (Some(sent), Some(back)) => back == sent,
                _ => false,
            });
        // A record the identity matches more than once is compared in SQL too.
        if !same || std::mem::replace(&mut self.seen[ord], true) {
            self.suspects.push(ord);
        }
    }

    /// The records that did not read back identical, in order.
    fn suspects(mut self) -> Result<Vec<usize>, ConnectorError> {
        if let Some(e) = self.malformed {
            return Err(ConnectorError::permanent(format!("reading records back: {e}")));
        }
        self.suspects.extend(self.seen.iter().enumerate().filter(|(_, seen)| !**seen).map(|(i, _)| i));
        self.suspects.sort_unstable();
        self.suspects.dedup();
        Ok(self.suspects)
    }
}
