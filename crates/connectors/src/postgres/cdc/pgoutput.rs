//! Decoding the messages of PostgreSQL's `pgoutput` logical decoding plugin, protocol version 1
//! (the "Logical Replication Message Formats" chapter of the PostgreSQL manual). Pure: bytes in,
//! messages borrowing from them out.

use chrono::{DateTime, Utc};

use super::Lsn;

/// A malformed or unexpected `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pgoutput: {0}")]
pub struct DecodeError(pub String);

/// One `pgoutput` message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// A transaction starts; `final_lsn` is where its commit record is.
    Begin {
        final_lsn: Lsn,
        committed_at: DateTime<Utc>,
        xid: u32,
    },
    /// The transaction ends; confirming `end_lsn` means it was applied.
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        committed_at: DateTime<Utc>,
    },
    /// The transaction came from another node (`origin`).
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    /// The shape of a table, sent before its first change and after it changed.
    Relation(Relation),
    /// A type that is not built in, named for the columns that use it.
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    /// `old` is the old key (`OldTuple::Key`) when the key changed, or the whole old row under
    /// `REPLICA IDENTITY FULL`.
    Update {
        relation: u32,
        old: Option<OldTuple<'a>>,
        new: Tuple<'a>,
    },
    Delete {
        relation: u32,
        old: OldTuple<'a>,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A message of `pg_logical_emit_message`, not part of any table's data.
    Logical,
}

/// A table as `pgoutput` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// A column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity (the key).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// The values of one row, in the relation's column order.
pub type Tuple<'a> = Vec<Datum<'a>>;

/// One value of a [`Tuple`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datum<'a> {
    Null,
    /// A TOASTed value the change left alone: it is not sent.
    Unchanged,
    /// The value in the type's text output format.
    Text(&'a [u8]),
    /// The value in the type's binary send format.
    Binary(&'a [u8]),
}

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq)]
pub enum OldTuple<'a> {
    /// The replica identity columns; the others are NULL.
    Key(Tuple<'a>),
    /// The whole row (`REPLICA IDENTITY FULL`).
    Full(Tuple<'a>),
}

impl<'a> OldTuple<'a> {
    /// The values, whichever kind.
    pub fn tuple(&self) -> &Tuple<'a> {
        match self {
            Self::Key(tuple) | Self::Full(tuple) => tuple,
        }
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let message = match r.u8()? {
        b'B' => Message::Begin { final_lsn: r.lsn()?, committed_at: r.timestamp()?, xid: r.u32()? },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit { commit_lsn: r.lsn()?, end_lsn: r.lsn()?, committed_at: r.timestamp()? }
        }
        b'O' => Message::Origin { commit_lsn: r.lsn()?, name: r.string()? },
        b'R' => Message::Relation(r.relation()?),
        b'Y' => Message::Type { oid: r.u32()?, namespace: r.string()?, name: r.string()? },
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert { relation, new: r.tuple()? }
        }
        b'U' => {
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'N' => None,
                marker => {
                    let old = r.old_tuple(marker)?;
                    r.expect(b'N')?;
                    Some(old)
                }
            };
            Message::Update { relation, old, new: r.tuple()? }
        }
        b'D' => {
            let relation = r.u32()?;
            let marker = r.u8()?;
            Message::Delete { relation, old: r.old_tuple(marker)? }
        }
        b'T' => {
            let count = r.u32()?;
            let options = r.u8()?;
            let relations = (0..count).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { relations, cascade: options & 1 != 0, restart_identity: options & 2 != 0 }
        }
        b'M' => return Ok(Message::Logical),
        tag => return Err(DecodeError(format!("unknown message type {:?}", tag as char))),
    };
    match r.pos == bytes.len() {
        true => Ok(message),
        false => Err(DecodeError(format!("{} bytes after the message", bytes.len() - r.pos))),
    }
}

/// A cursor over one message.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| DecodeError(format!("message truncated at byte {}", self.pos)))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        Ok(Lsn::from(u64::from_be_bytes(self.array()?)))
    }

    fn timestamp(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        let micros = i64::from_be_bytes(self.array()?);
        micros
            .checked_add(POSTGRES_EPOCH_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(|| DecodeError(format!("timestamp {micros} out of range")))
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.bytes[self.pos..];
        let len = rest.iter().position(|&b| b == 0).ok_or_else(|| DecodeError("unterminated string".into()))?;
        let text = std::str::from_utf8(&rest[..len]).map_err(|e| DecodeError(format!("string: {e}")))?;
        self.pos += len + 1;
        Ok(text.to_owned())
    }

    fn expect(&mut self, marker: u8) -> Result<(), DecodeError> {
        match self.u8()? {
            found if found == marker => Ok(()),
            found => Err(DecodeError(format!("expected {:?}, found {:?}", marker as char, found as char))),
        }
    }

    fn relation(&mut self) -> Result<Relation, DecodeError> {
        let (oid, namespace, name, replica_identity) = (self.u32()?, self.string()?, self.string()?, self.u8()?);
        let count = self.i16()?;
        let mut columns = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            let key = self.u8()? & 1 != 0;
            columns.push(RelationColumn {
                key,
                name: self.string()?,
                type_oid: self.u32()?,
                type_modifier: self.i32()?,
            });
        }
        Ok(Relation { oid, namespace, name, replica_identity, columns })
    }

    fn tuple(&mut self) -> Result<Tuple<'a>, DecodeError> {
        let count = self.i16()?;
        let mut tuple = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            tuple.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = usize::try_from(self.i32()?).map_err(|_| DecodeError("negative value length".into()))?;
                    let bytes = self.take(len)?;
                    if kind == b't' { Datum::Text(bytes) } else { Datum::Binary(bytes) }
                }
                kind => return Err(DecodeError(format!("unknown column kind {:?}", kind as char))),
            });
        }
        Ok(tuple)
    }

    fn old_tuple(&mut self, marker: u8) -> Result<OldTuple<'a>, DecodeError> {
        match marker {
            b'K' => Ok(OldTuple::Key(self.tuple()?)),
            b'O' => Ok(OldTuple::Full(self.tuple()?)),
            other => Err(DecodeError(format!("expected 'K' or 'O' before the old row, found {:?}", other as char))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds messages the way the server writes them.
    struct Writer(Vec<u8>);

    impl Writer {
        fn new(tag: u8) -> Self {
            Self(vec![tag])
        }
        fn raw(mut self, v: &[u8]) -> Self {
            self.0.extend_from_slice(v);
            self
        }
        fn u8(self, v: u8) -> Self {
            self.raw(&[v])
        }
        fn i16(self, v: i16) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn u32(self, v: u32) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn i32(self, v: i32) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn u64(self, v: u64) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn str(self, v: &str) -> Self {
            self.raw(v.as_bytes()).u8(0)
        }
        /// A tuple of text values (`None` is NULL).
        fn tuple(mut self, values: &[Option<&str>]) -> Self {
            self = self.i16(values.len() as i16);
            for value in values {
                self = match value {
                    None => self.u8(b'n'),
                    Some(text) => self.u8(b't').i32(text.len() as i32).raw(text.as_bytes()),
                };
            }
            self
        }
    }

    /// 2024-01-02 03:04:05.000006 UTC in microseconds since 2000-01-01.
    const STAMP: i64 = 757_479_845_000_006;

    fn stamp() -> DateTime<Utc> {
        "2024-01-02T03:04:05.000006Z".parse().expect("a timestamp")
    }

    #[test]
    fn begin_commit_and_origin() {
        let begin = Writer::new(b'B').u64(0x1_0000_0010).u64(STAMP as u64).u32(42).0;
        let final_lsn = Lsn::from(0x1_0000_0010);
        assert_eq!(decode(&begin), Ok(Message::Begin { final_lsn, committed_at: stamp(), xid: 42 }));
        let commit = Writer::new(b'C').u8(0).u64(0x10).u64(0x48).u64(STAMP as u64).0;
        let expected = Message::Commit { commit_lsn: 0x10.into(), end_lsn: 0x48.into(), committed_at: stamp() };
        assert_eq!(decode(&commit), Ok(expected));
        let origin = Writer::new(b'O').u64(7).str("node_a").0;
        assert_eq!(decode(&origin), Ok(Message::Origin { commit_lsn: 7.into(), name: "node_a".into() }));
    }

    #[test]
    fn relations_and_types() {
        let relation = Writer::new(b'R')
            .u32(16_384)
            .str("public")
            .str("orders")
            .u8(b'd')
            .i16(2)
            .u8(1)
            .str("id")
            .u32(23)
            .i32(-1)
            .u8(0)
            .str("note")
            .u32(1043)
            .i32(68)
            .0;
        let column = |key, name: &str, type_oid, type_modifier| RelationColumn {
            key,
            name: name.into(),
            type_oid,
            type_modifier,
        };
        let expected = Relation {
            oid: 16_384,
            namespace: "public".into(),
            name: "orders".into(),
            replica_identity: b'd',
            columns: vec![column(true, "id", 23, -1), column(false, "note", 1043, 68)],
        };
        assert_eq!(decode(&relation), Ok(Message::Relation(expected)));
        let ty = Writer::new(b'Y').u32(90_000).str("public").str("mood").0;
        assert_eq!(decode(&ty), Ok(Message::Type { oid: 90_000, namespace: "public".into(), name: "mood".into() }));
    }

    #[test]
    fn inserts_carry_every_kind_of_value() {
        let insert = Writer::new(b'I').u32(5).u8(b'N').i16(5).u8(b't').i32(1).raw(b"1").u8(b'n').u8(b'u');
        let insert = insert.u8(b't').i32(0).u8(b'b').i32(2).raw(&[0xff, 0]);
        let new = vec![Datum::Text(b"1"), Datum::Null, Datum::Unchanged, Datum::Text(b""), Datum::Binary(&[0xff, 0])];
        assert_eq!(decode(&insert.0), Ok(Message::Insert { relation: 5, new }));
    }

    #[test]
    fn updates_with_and_without_the_old_row() {
        let plain = Writer::new(b'U').u32(5).u8(b'N').tuple(&[Some("1"), Some("a")]).0;
        let new = vec![Datum::Text(b"1"), Datum::Text(b"a")];
        assert_eq!(decode(&plain), Ok(Message::Update { relation: 5, old: None, new: new.clone() }));

        let key = Writer::new(b'U').u32(5).u8(b'K').tuple(&[Some("0"), None]).u8(b'N').tuple(&[Some("1"), Some("a")]);
        let old = Some(OldTuple::Key(vec![Datum::Text(b"0"), Datum::Null]));
        assert_eq!(decode(&key.0), Ok(Message::Update { relation: 5, old, new: new.clone() }));

        let full =
            Writer::new(b'U').u32(5).u8(b'O').tuple(&[Some("1"), Some("b")]).u8(b'N').tuple(&[Some("1"), Some("a")]);
        let old = Some(OldTuple::Full(vec![Datum::Text(b"1"), Datum::Text(b"b")]));
        assert_eq!(decode(&full.0), Ok(Message::Update { relation: 5, old, new }));
    }

    #[test]
    fn deletes_by_key_or_whole_row() {
        let key = Writer::new(b'D').u32(9).u8(b'K').tuple(&[Some("3"), None]).0;
        let old = OldTuple::Key(vec![Datum::Text(b"3"), Datum::Null]);
        assert_eq!(decode(&key), Ok(Message::Delete { relation: 9, old }));
        let full = Writer::new(b'D').u32(9).u8(b'O').tuple(&[Some("3"), Some("x")]).0;
        let old = OldTuple::Full(vec![Datum::Text(b"3"), Datum::Text(b"x")]);
        assert_eq!(decode(&full), Ok(Message::Delete { relation: 9, old }));
    }

    #[test]
    fn truncates_and_ignored_messages() {
        let truncate = Writer::new(b'T').u32(2).u8(3).u32(5).u32(9).0;
        let expected = Message::Truncate { relations: vec![5, 9], cascade: true, restart_identity: true };
        assert_eq!(decode(&truncate), Ok(expected));
        let logical = Writer::new(b'M').u8(1).u64(1).str("prefix").u32(2).u8(b'h').u8(b'i').0;
        assert_eq!(decode(&logical), Ok(Message::Logical));
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(decode(b"").is_err(), "empty");
        assert!(decode(b"Z").is_err(), "unknown type");
        let full = Writer::new(b'I').u32(5).u8(b'N').tuple(&[Some("12345")]).0;
        assert!(decode(&full[..full.len() - 1]).is_err(), "truncated value");
        assert!(decode(&[full.as_slice(), b"x"].concat()).is_err(), "trailing bytes");
        let marker = Writer::new(b'D').u32(9).u8(b'N').tuple(&[Some("3")]).0;
        assert!(decode(&marker).is_err(), "a delete without its old row");
        let negative = Writer::new(b'I').u32(5).u8(b'N').i16(1).u8(b't').i32(-5).0;
        assert!(decode(&negative).is_err(), "negative length");
        assert!(decode(&Writer::new(b'R').u32(1).u8(b'p').0).is_err(), "unterminated name");
    }
}
