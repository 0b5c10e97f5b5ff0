//! The audit chain: each finished transaction's record (its row and its
//! steps) hashed together with the previous finished record's hash, so that
//! `verify` finds the first record that was edited or removed.

use super::{Cause, Journal, JournalError};
use rusqlite::{Connection, OptionalExtension};

/// Columns added by migrations after the chain existed.
const LATER_COLUMNS: [&str; 4] = ["from_id", "to_id", "batch", "result"];

/// The hash of one transaction's record chained to `previous`: SHA-256 of
/// the previous hash and the canonical text of every column of its row
/// (but the chain's own) and of its steps, in a fixed order, one JSON
/// object per row. Rows are hashed one at a time, so a transaction of a
/// thousand jails costs no more memory than one row.
pub(super) fn record_hash(
    connection: &Connection,
    id: i64,
    previous: &str,
) -> Result<String, Cause> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    let mut hash_rows = |statement: &mut rusqlite::Statement<'_>| -> Result<(), Cause> {
        let names: Vec<String> = statement
            .column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut rows = statement.query([id])?;
        while let Some(row) = rows.next()? {
            let mut object = serde_json::Map::new();
            for (index, name) in names.iter().enumerate() {
                let value = match row.get_ref(index)? {
                    rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                    rusqlite::types::ValueRef::Integer(n) => serde_json::Value::from(n),
                    rusqlite::types::ValueRef::Real(f) => serde_json::Value::from(f),
                    rusqlite::types::ValueRef::Text(t) => {
                        serde_json::Value::from(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(b) => serde_json::Value::from(
                        b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
                    ),
                };
                // Columns added after a record was hashed are NULL in it:
                // they count only when set, so old records still verify.
                if value.is_null() && LATER_COLUMNS.contains(&name.as_str()) {
                    continue;
                }
                object.insert(name.clone(), value);
            }
            hasher.update(b"\n");
            hasher.update(serde_json::Value::Object(object).to_string().as_bytes());
        }
        Ok(())
    };
    hash_rows(&mut connection.prepare(
        "SELECT id, kind, state, store, live, target, archive_as, from_label, to_label, from_inode, to_inode, plan, started_at,
                finished_at, downtime_ms, downtime_jails, user, uid, hostname, command_line, reason, error, from_fingerprint, to_fingerprint,
                from_id, to_id
         FROM txn WHERE id = ?1",
    )?)?;
    hash_rows(&mut connection.prepare(
        "SELECT seq, wave, phase, action, jail, detail, state, started_at, finished_at, error, undo_started_at, undo_finished_at, undo_error,
                batch, result
         FROM step WHERE txn_id = ?1 ORDER BY seq",
    )?)?;
    Ok(crate::template::hex(&hasher.finalize()))
}

/// What `verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The integrity check passed and every finished record matches its hash.
    Intact { records: usize },
    /// The first record that does not match, and why.
    Broken { id: Option<i64>, reason: String },
}

impl Journal {
    /// Checks SQLite's integrity (the full check) and the audit chain.
    pub fn verify(&self) -> Result<Verdict, JournalError> {
        let result = (|| -> Result<Verdict, Cause> {
            let integrity: String =
                self.connection
                    .query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            if integrity != "ok" {
                return Ok(Verdict::Broken {
                    id: None,
                    reason: format!("SQLite integrity check failed: {integrity}"),
                });
            }
            let mut statement = self.connection.prepare("SELECT id, previous_hash, record_hash FROM txn WHERE record_hash IS NOT NULL ORDER BY id")?;
            let chain: Vec<(i64, Option<String>, String)> = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut previous = String::new();
            for (id, stored_previous, stored_hash) in &chain {
                if stored_previous.as_deref().unwrap_or("") != previous {
                    return Ok(Verdict::Broken {
                        id: Some(*id),
                        reason: "its link to the previous record does not match: a record before it was removed or altered".into(),
                    });
                }
                if record_hash(&self.connection, *id, &previous)? != *stored_hash {
                    return Ok(Verdict::Broken {
                        id: Some(*id),
                        reason: "its contents do not match its hash: the record was edited".into(),
                    });
                }
                previous = stored_hash.clone();
            }
            let unhashed: Option<i64> = self
                .connection
                .query_row("SELECT id FROM txn WHERE record_hash IS NULL AND state IN ('committed', 'rolled_back') ORDER BY id LIMIT 1", [], |row| row.get(0))
                .optional()?;
            if let Some(id) = unhashed {
                return Ok(Verdict::Broken {
                    id: Some(id),
                    reason: "it is final but carries no hash".into(),
                });
            }
            Ok(Verdict::Intact {
                records: chain.len(),
            })
        })();
        result.map_err(|cause| self.error(cause))
    }
}
