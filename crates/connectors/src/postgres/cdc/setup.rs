//! Setting a capture up (checks, publication, slot) and tearing it down.

use syncline_core::connector::ConnectorError;

use super::{Capture, Lsn, error};
use crate::postgres::client::{quote_ident, split_object};

impl Capture {
    /// Makes the source ready to capture `tables` (`schema.table`, the schema defaulting to
    /// `public`): checks `wal_level` and the role's `REPLICATION` attribute, points the
    /// publication at exactly these tables (creating it, or changing its tables), creates the
    /// slot when it is missing, and returns the slot's confirmed position. Repeatable.
    pub async fn prepare(&self, tables: &[String]) -> Result<Lsn, ConnectorError> {
        let (client, deadlines) = (&self.conn.client, self.conn.ctx.deadlines);
        let sql = "select current_setting('wal_level'), current_user::text, rolsuper or rolreplication
                     or exists (select 1 from pg_roles r where r.rolname = 'rds_replication'
                                and pg_has_role(current_user, r.oid, 'member'))
                   from pg_roles where rolname = current_user";
        let row = self.run(deadlines.query, client.query_one(sql, &[])).await?;
        let (wal_level, role, can_replicate) = (
            row.try_get::<_, String>(0).map_err(|e| error(&e))?,
            row.try_get::<_, String>(1).map_err(|e| error(&e))?,
            row.try_get::<_, bool>(2).map_err(|e| error(&e))?,
        );
        check_server(&wal_level, &role, can_replicate)?;

        let list = self.check_tables(tables).await?;
        let publication = quote_ident(&self.names.publication);
        let exists = "select exists (select 1 from pg_publication where pubname = $1)";
        let row = self.run(deadlines.query, client.query_one(exists, &[&self.names.publication])).await?;
        let statement = match row.try_get::<_, bool>(0).map_err(|e| error(&e))? {
            true => format!("alter publication {publication} set table {list}"),
            false => {
                format!("create publication {publication} for table {list} with (publish_via_partition_root = true)")
            }
        };
        self.run(deadlines.query, client.batch_execute(&statement)).await?;

        let slot = "select plugin::text, database::text = current_database()::text, confirmed_flush_lsn
                    from pg_replication_slots where slot_name = $1";
        let rows = self.run(deadlines.query, client.query(slot, &[&self.names.slot])).await?;
        let Some(row) = rows.first() else {
            // Waits for the transactions running now to end (the slot's start must be consistent).
            let create = "select lsn from pg_create_logical_replication_slot($1, 'pgoutput')";
            let row = self.run(deadlines.idle, client.query_one(create, &[&self.names.slot])).await?;
            return row.try_get(0).map_err(|e| error(&e));
        };
        let (plugin, here) =
            (row.try_get::<_, String>(0).map_err(|e| error(&e))?, row.try_get::<_, bool>(1).map_err(|e| error(&e))?);
        if plugin != "pgoutput" || !here {
            let slot = &self.names.slot;
            let why = format!("replication slot {slot} exists already for another database or plugin ({plugin})");
            return Err(ConnectorError::config(why));
        }
        row.try_get(2).map_err(|e| error(&e))
    }

    /// Checks that every table exists and has a replica identity; returns them as a SQL list.
    async fn check_tables(&self, tables: &[String]) -> Result<String, ConnectorError> {
        if tables.is_empty() {
            return Err(ConnectorError::config("change capture needs at least one table"));
        }
        let (schemas, names): (Vec<String>, Vec<String>) = tables.iter().map(|t| split_object(t)).unzip();
        let sql = "select c.relkind::text, c.relreplident::text,
                          exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary)
                   from unnest($1::text[], $2::text[]) with ordinality as t(nsp, rel, n)
                   left join pg_namespace s on s.nspname = t.nsp
                   left join pg_class c on c.relnamespace = s.oid and c.relname = t.rel
                   order by t.n";
        let rows = self.run(self.conn.ctx.deadlines.query, self.conn.client.query(sql, &[&schemas, &names])).await?;
        let mut list = Vec::with_capacity(tables.len());
        for ((schema, name), row) in schemas.iter().zip(&names).zip(&rows) {
            let kind: Option<String> = row.try_get(0).map_err(|e| error(&e))?;
            let identity: Option<String> = row.try_get(1).map_err(|e| error(&e))?;
            let has_primary_key: bool = row.try_get(2).map_err(|e| error(&e))?;
            check_table(&format!("{schema}.{name}"), kind.as_deref(), identity.as_deref(), has_primary_key)?;
            list.push(format!("{}.{}", quote_ident(schema), quote_ident(name)));
        }
        Ok(list.join(", "))
    }

    /// Drops the slot and the publication; nothing to drop is no error.
    pub async fn remove(&self) -> Result<(), ConnectorError> {
        let (client, limit) = (&self.conn.client, self.conn.ctx.deadlines.query);
        let sql = "select pg_drop_replication_slot(slot_name) from pg_replication_slots
                   where slot_name = $1 and database = current_database()";
        self.run(limit, client.query(sql, &[&self.names.slot])).await?;
        let drop = format!("drop publication if exists {}", quote_ident(&self.names.publication));
        self.run(limit, client.batch_execute(&drop)).await
    }
}

/// Refuses a server or role that cannot replicate logically, naming the setting to change.
fn check_server(wal_level: &str, role: &str, can_replicate: bool) -> Result<(), ConnectorError> {
    if wal_level != "logical" {
        return Err(ConnectorError::config(format!(
            "wal_level is {wal_level}; logical replication needs wal_level = logical \
             (ALTER SYSTEM SET wal_level = logical and restart PostgreSQL)"
        )));
    }
    if !can_replicate {
        let role = quote_ident(role);
        return Err(ConnectorError::config(format!(
            "the role {role} lacks the REPLICATION attribute that logical replication needs \
             (ALTER ROLE {role} WITH REPLICATION)"
        )));
    }
    Ok(())
}

/// Refuses what cannot be published, or whose updates and deletes the source would then refuse:
/// a table needs a primary key or another replica identity.
fn check_table(
    name: &str,
    kind: Option<&str>,
    identity: Option<&str>,
    has_primary_key: bool,
) -> Result<(), ConnectorError> {
    match kind {
        None => Err(ConnectorError::not_found(format!("table {name} does not exist"))),
        Some("r" | "p") => match identity {
            Some("d") if !has_primary_key => Err(no_identity(name)),
            Some("n") => Err(no_identity(name)),
            _ => Ok(()),
        },
        Some(_) => Err(ConnectorError::config(format!("{name} is not a table: only tables' changes can be captured"))),
    }
}

fn no_identity(name: &str) -> ConnectorError {
    ConnectorError::config(format!(
        "table {name} has no primary key, so its updates and deletes cannot be captured: \
         add one, or ALTER TABLE {name} REPLICA IDENTITY FULL"
    ))
}

#[cfg(test)]
mod tests {
    use syncline_core::connector::ErrorClass;

    use super::*;

    #[test]
    fn server_errors_name_the_setting() {
        let error = check_server("replica", "app", true).expect_err("wal_level replica");
        assert_eq!(error.class, ErrorClass::Config);
        assert_eq!(
            error.message,
            "wal_level is replica; logical replication needs wal_level = logical \
             (ALTER SYSTEM SET wal_level = logical and restart PostgreSQL)"
        );
        let error = check_server("logical", "app", false).expect_err("no REPLICATION");
        assert_eq!(error.class, ErrorClass::Config);
        assert!(error.message.contains("REPLICATION") && error.message.contains("\"app\""), "{}", error.message);
        assert!(check_server("logical", "app", true).is_ok());
    }

    #[test]
    fn tables_need_a_replica_identity() {
        assert!(check_table("public.t", Some("r"), Some("d"), true).is_ok());
        assert!(check_table("public.t", Some("p"), Some("f"), false).is_ok());
        assert!(check_table("public.t", Some("r"), Some("i"), false).is_ok());
        assert_eq!(check_table("public.t", None, None, false).map_err(|e| e.class), Err(ErrorClass::NotFound));
        let error = check_table("public.t", Some("r"), Some("d"), false).expect_err("no key");
        assert!(error.message.contains("REPLICA IDENTITY FULL"), "{}", error.message);
        assert!(check_table("public.t", Some("r"), Some("n"), true).is_err());
        assert_eq!(check_table("public.v", Some("v"), None, false).map_err(|e| e.class), Err(ErrorClass::Config));
    }
}
