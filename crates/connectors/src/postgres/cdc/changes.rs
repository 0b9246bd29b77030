//! What a poll hands over, and how `pgoutput` messages become it: committed transactions of
//! typed row changes, each naming the table shape it was decoded with.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use syncline_core::{
    connector::ConnectorError,
    record::{Field, Value},
};

use super::{
    Lsn,
    pgoutput::{self, Datum, Message, OldTuple, Relation},
    text,
};
use crate::postgres::types;

/// A captured table as its changes describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// `schema.table`, as in the source's catalog.
    pub name: String,
    /// The published columns, with the field types the source reads them as.
    pub fields: Vec<Field>,
    /// Positions in `fields` of the replica identity: the primary key by default, every column
    /// under `REPLICA IDENTITY FULL`.
    pub key: Vec<usize>,
    /// The PostgreSQL type of each field.
    type_oids: Vec<u32>,
}

/// One value of a changed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Value(Value),
    /// A large (TOASTed) value the update left alone and PostgreSQL did not send: the
    /// destination keeps the value it has.
    Unchanged,
}

/// The values of a row, one per field of its [`Table`].
pub type Row = Vec<Cell>;

/// What happened to a row (or a table).
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Insert(Row),
    /// `old_key` holds the key before the update when the update changed it.
    Update {
        row: Row,
        old_key: Option<Vec<Value>>,
    },
    /// The key of the deleted row (one value per [`Table::key`] field).
    Delete {
        key: Vec<Value>,
    },
    /// Every row of the table was deleted.
    Truncate,
}

/// A change of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: Arc<Table>,
    pub kind: ChangeKind,
}

/// A committed transaction's changes, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub xid: u32,
    pub committed_at: DateTime<Utc>,
    /// Where the transaction ends in the WAL.
    pub end_lsn: Lsn,
    pub changes: Vec<Change>,
}

/// Whole transactions, oldest first, and where to confirm once they are applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeSet {
    pub transactions: Vec<Transaction>,
    /// Confirming this position (after the destination committed every transaction here)
    /// releases them; `None` when there is nothing to confirm. Past the last transaction's end
    /// when the poll read every change up to a later position.
    pub end: Option<Lsn>,
    /// The source's WAL flush position when the poll began: how far there was to read.
    pub highwater: Option<Lsn>,
}

impl ChangeSet {
    /// Every change, in commit order.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.transactions.iter().flat_map(|t| &t.changes)
    }
}

/// Builds a [`ChangeSet`] from the messages of one decoding call, in one pass. Each call sends
/// the relations it uses before their first change, so no state carries over between calls.
#[derive(Default)]
pub(super) struct Assembler {
    tables: HashMap<u32, Arc<Table>>,
    open: Option<Transaction>,
    done: Vec<Transaction>,
}

impl Assembler {
    /// Takes in the next message.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<(), ConnectorError> {
        let message = pgoutput::decode(bytes).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let (table, kind) = match message {
            Message::Begin { xid, committed_at, .. } => {
                let transaction = Transaction { xid, committed_at, end_lsn: Lsn::from(0), changes: vec![] };
                if self.open.replace(transaction).is_some() {
                    return Err(protocol("a transaction began inside another"));
                }
                return Ok(());
            }
            Message::Commit { end_lsn, .. } => {
                let mut transaction = self.open.take().ok_or_else(|| protocol("a commit outside a transaction"))?;
                transaction.end_lsn = end_lsn;
                self.done.push(transaction);
                return Ok(());
            }
            Message::Relation(relation) => {
                self.tables.insert(relation.oid, Arc::new(table(relation)));
                return Ok(());
            }
            Message::Origin { .. } | Message::Type { .. } | Message::Logical => return Ok(()),
            Message::Truncate { relations, .. } => {
                for oid in relations {
                    let table = self.table(oid)?;
                    self.push(Change { table, kind: ChangeKind::Truncate })?;
                }
                return Ok(());
            }
            Message::Insert { relation, new } => {
                let table = self.table(relation)?;
                let row = row(&table, &new)?;
                (table, ChangeKind::Insert(row))
            }
            Message::Update { relation, old, new } => {
                let table = self.table(relation)?;
                let row = row(&table, &new)?;
                let old_key = match old {
                    Some(old) => Some(key(&table, &old)?).filter(|old| key_changed(&table, old, &row)),
                    None => None,
                };
                (table, ChangeKind::Update { row, old_key })
            }
            Message::Delete { relation, old } => {
                let table = self.table(relation)?;
                let key = key(&table, &old)?;
                (table, ChangeKind::Delete { key })
            }
        };
        self.push(Change { table, kind })
    }

    /// The transactions that committed; a transaction still open (cut off) is left out. `end`
    /// is the last one's end, or `read_up_to` when the messages were every change before it.
    pub(super) fn finish(self, read_up_to: Option<Lsn>) -> ChangeSet {
        let last = self.done.last().map(|t| t.end_lsn);
        let end = match (self.open, read_up_to) {
            (None, Some(upto)) => last.max(Some(upto)),
            _ => last,
        };
        let transactions = self.done.into_iter().filter(|t| !t.changes.is_empty()).collect();
        ChangeSet { transactions, end, highwater: None }
    }

    fn table(&self, oid: u32) -> Result<Arc<Table>, ConnectorError> {
        self.tables.get(&oid).cloned().ok_or_else(|| protocol(&format!("a change of relation {oid} before its shape")))
    }

    fn push(&mut self, change: Change) -> Result<(), ConnectorError> {
        let open = self.open.as_mut().ok_or_else(|| protocol("a change outside a transaction"))?;
        open.changes.push(change);
        Ok(())
    }
}

fn protocol(what: &str) -> ConnectorError {
    ConnectorError::permanent(format!("pgoutput: {what}"))
}

fn table(relation: Relation) -> Table {
    let name = format!("{}.{}", relation.namespace, relation.name);
    let key = relation.columns.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect();
    let type_oids = relation.columns.iter().map(|c| c.type_oid).collect();
    let fields = relation
        .columns
        .into_iter()
        .map(|c| Field { field_type: types::field_type_of(c.type_oid), name: c.name })
        .collect();
    Table { name, fields, key, type_oids }
}

/// The typed values of `tuple`.
fn row(table: &Table, tuple: &[Datum<'_>]) -> Result<Row, ConnectorError> {
    if tuple.len() != table.fields.len() {
        let (found, expected) = (tuple.len(), table.fields.len());
        return Err(protocol(&format!("a row of {} with {found} values for {expected} columns", table.name)));
    }
    tuple.iter().enumerate().map(|(i, &datum)| cell(table, i, datum)).collect()
}

fn cell(table: &Table, index: usize, datum: Datum<'_>) -> Result<Cell, ConnectorError> {
    let field = &table.fields[index];
    let fail = |why: String| ConnectorError::permanent(format!("{}.{}: {why}", table.name, field.name));
    Ok(match datum {
        Datum::Null => Cell::Value(Value::Null),
        Datum::Unchanged => Cell::Unchanged,
        Datum::Text(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|e| fail(e.to_string()))?;
            Cell::Value(text::value(&field.field_type, table.type_oids[index], text).map_err(|e| fail(e.0))?)
        }
        Datum::Binary(_) => return Err(fail("a binary value, though text was asked for".into())),
    })
}

/// The key values of an old row.
fn key(table: &Table, old: &OldTuple<'_>) -> Result<Vec<Value>, ConnectorError> {
    let old = row(table, old.tuple())?;
    let values = table.key.iter().map(|&i| match &old[i] {
        Cell::Value(value) => Ok(value.clone()),
        Cell::Unchanged => Err(protocol(&format!("an old key of {} without its value", table.name))),
    });
    values.collect()
}

/// Whether the new row's key differs from `old` (an unchanged value is the same).
fn key_changed(table: &Table, old: &[Value], row: &Row) -> bool {
    table.key.iter().zip(old).any(|(&i, old)| matches!(&row[i], Cell::Value(new) if new != old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_core::record::FieldType;

    /// Encodes messages as `pgoutput` does, for the few shapes these tests use.
    fn message(tag: u8, body: &[&[u8]]) -> Vec<u8> {
        [&[tag][..], &body.concat()].concat()
    }

    fn begin(xid: u32) -> Vec<u8> {
        message(b'B', &[&1u64.to_be_bytes(), &0i64.to_be_bytes(), &xid.to_be_bytes()])
    }

    fn commit(end: u64) -> Vec<u8> {
        message(b'C', &[&[0], &(end - 8).to_be_bytes(), &end.to_be_bytes(), &0i64.to_be_bytes()])
    }

    /// Relation 7, `public.items (id int4 key, name text, tags text[])`.
    fn relation() -> Vec<u8> {
        let column = |key: u8, name: &str, oid: u32| {
            [&[key][..], name.as_bytes(), &[0], &oid.to_be_bytes(), &(-1i32).to_be_bytes()].concat()
        };
        let columns = [column(1, "id", 23), column(0, "name", 25), column(0, "tags", 1009)].concat();
        message(b'R', &[&7u32.to_be_bytes(), b"public\0items\0d", &3i16.to_be_bytes(), &columns])
    }

    /// A tuple of text values; `Some("\u{0}")` is an unchanged TOAST value.
    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut out = (values.len() as i16).to_be_bytes().to_vec();
        for value in values {
            match value {
                None => out.push(b'n'),
                Some("\u{0}") => out.push(b'u'),
                Some(text) => out.extend([&[b't'][..], &(text.len() as i32).to_be_bytes(), text.as_bytes()].concat()),
            }
        }
        out
    }

    fn change(kind: u8, old: Option<(u8, &[Option<&str>])>, new: Option<&[Option<&str>]>) -> Vec<u8> {
        let mut body = 7u32.to_be_bytes().to_vec();
        if let Some((marker, old)) = old {
            body.push(marker);
            body.extend(tuple(old));
        }
        if let Some(new) = new {
            body.push(b'N');
            body.extend(tuple(new));
        }
        message(kind, &[&body])
    }

    fn assemble(messages: &[Vec<u8>], read_up_to: Option<u64>) -> ChangeSet {
        let mut assembler = Assembler::default();
        for m in messages {
            assembler.feed(m).expect("a valid message");
        }
        assembler.finish(read_up_to.map(Lsn::from))
    }

    fn text(t: &str) -> Cell {
        Cell::Value(Value::Text(t.into()))
    }

    #[test]
    fn typed_changes_of_whole_transactions() {
        let set = assemble(
            &[
                begin(1),
                relation(),
                change(b'I', None, Some(&[Some("1"), Some("a"), Some(r#"{x,"y z"}"#)])),
                change(b'U', None, Some(&[Some("1"), Some("\u{0}"), None])),
                change(b'U', Some((b'K', &[Some("1"), None, None])), Some(&[Some("2"), Some("b"), None])),
                change(b'D', Some((b'K', &[Some("2"), None, None])), None),
                message(b'T', &[&1u32.to_be_bytes(), &[0], &7u32.to_be_bytes()]),
                commit(100),
                begin(2),
                change(b'I', None, Some(&[Some("3"), None, Some("{}")])),
            ],
            None,
        );
        assert_eq!(set.end, Some(Lsn::from(100)), "the open transaction is left for later");
        assert_eq!(set.transactions.len(), 1);
        let table = &set.transactions[0].changes[0].table;
        assert_eq!((table.name.as_str(), table.key.as_slice()), ("public.items", &[0][..]));
        assert_eq!(table.fields[2].field_type, FieldType::List(Box::new(FieldType::Text)));
        let kinds: Vec<&ChangeKind> = set.changes().map(|c| &c.kind).collect();
        let tags = Cell::Value(Value::List(vec![Value::Text("x".into()), Value::Text("y z".into())]));
        let null = Cell::Value(Value::Null);
        assert_eq!(kinds[0], &ChangeKind::Insert(vec![Cell::Value(Value::Int(1)), text("a"), tags]));
        let unchanged = vec![Cell::Value(Value::Int(1)), Cell::Unchanged, null.clone()];
        assert_eq!(kinds[1], &ChangeKind::Update { row: unchanged, old_key: None });
        let moved = vec![Cell::Value(Value::Int(2)), text("b"), null];
        assert_eq!(kinds[2], &ChangeKind::Update { row: moved, old_key: Some(vec![Value::Int(1)]) });
        assert_eq!(kinds[3], &ChangeKind::Delete { key: vec![Value::Int(2)] });
        assert_eq!(kinds[4], &ChangeKind::Truncate);
    }

    #[test]
    fn a_full_old_row_reports_the_key_only_when_it_changed() {
        let same = change(b'U', Some((b'O', &[Some("1"), Some("a"), None])), Some(&[Some("1"), Some("b"), None]));
        let set = assemble(&[begin(1), relation(), same, commit(50)], None);
        assert!(matches!(&set.transactions[0].changes[0].kind, ChangeKind::Update { old_key: None, .. }));
    }

    #[test]
    fn the_end_moves_past_transactions_when_everything_was_read() {
        assert_eq!(assemble(&[], Some(300)).end, Some(Lsn::from(300)), "nothing to read up to 300");
        let empty = assemble(&[begin(1), commit(80)], None);
        assert_eq!((empty.transactions.len(), empty.end), (0, Some(Lsn::from(80))), "an empty transaction");
        let cut = assemble(&[begin(1), commit(80), begin(2)], Some(300));
        assert_eq!(cut.end, Some(Lsn::from(80)), "a cut-off transaction holds the end back");
    }

    #[test]
    fn inconsistent_streams_are_errors() {
        let mut assembler = Assembler::default();
        assembler.feed(&begin(1)).expect("begin");
        let orphan = change(b'I', None, Some(&[Some("1"), None, None]));
        assert!(assembler.feed(&orphan).is_err(), "a change of an unknown relation");
        assembler.feed(&relation()).expect("relation");
        let short = change(b'I', None, Some(&[Some("1")]));
        assert!(assembler.feed(&short).is_err(), "too few values");
        let bad = change(b'I', None, Some(&[Some("one"), None, None]));
        let error = assembler.feed(&bad).expect_err("not an integer");
        assert!(error.message.starts_with("public.items.id: "), "{}", error.message);
        assert!(assembler.feed(&begin(2)).is_err(), "nested begin");
        assert!(Assembler::default().feed(&commit(10)).is_err(), "commit without begin");
    }
}
