//! Reading transactions and steps back, parsed strictly: a value the
//! journal never writes makes the journal corrupt, not a default.

use super::{Cause, Journal, JournalError, StepRecord, StepState, TxnRecord, TxnState};
use crate::plan::TransactionKind;
use crate::template::TemplateId;

impl Journal {
    const TXN_COLUMNS: &'static str = "id, kind, state, from_label, to_label, archive_as, target, from_inode, to_inode, started_at, finished_at,
        downtime_ms, downtime_jails, user, hostname, command_line, reason, interrupted_recoveries, attention, error, plan,
        from_fingerprint, to_fingerprint, from_id, to_id";

    fn txn_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<TxnRecord, Cause>> {
        let id: i64 = row.get(0)?;
        let kind: String = row.get(1)?;
        let state: String = row.get(2)?;
        let from_inode = row.get::<_, i64>(7)? as u64;
        let to_inode = row.get::<_, i64>(8)? as u64;
        let from_id: Option<String> = row.get(23)?;
        let to_id: Option<String> = row.get(24)?;
        let identity = |text: Option<String>, inode: u64| match text {
            None => Ok(TemplateId::Inode(inode)),
            Some(text) => TemplateId::parse(&text).ok_or_else(|| {
                Cause::Corrupt(format!(
                    "transaction {id}: {text:?} is not a template identity"
                ))
            }),
        };
        let record = (|| -> Result<TxnRecord, Cause> {
            Ok(TxnRecord {
                id,
                kind: TransactionKind::parse(&kind).ok_or_else(|| {
                    Cause::Corrupt(format!("transaction {id}: unknown kind {kind:?}"))
                })?,
                state: TxnState::parse(&state).ok_or_else(|| {
                    Cause::Corrupt(format!("transaction {id}: unknown state {state:?}"))
                })?,
                from_label: row.get(3)?,
                to_label: row.get(4)?,
                archive_as: row.get(5)?,
                target: row.get(6)?,
                from_id: identity(from_id, from_inode)?,
                to_id: identity(to_id, to_inode)?,
                started_at: row.get(9)?,
                finished_at: row.get(10)?,
                downtime_ms: row.get(11)?,
                downtime_jails: row.get(12)?,
                user: row.get(13)?,
                hostname: row.get(14)?,
                command_line: row.get(15)?,
                reason: row.get(16)?,
                interrupted_recoveries: row.get(17)?,
                attention: row.get(18)?,
                error: row.get(19)?,
                plan_json: row.get(20)?,
                from_fingerprint: row.get(21)?,
                to_fingerprint: row.get(22)?,
            })
        })();
        Ok(record)
    }

    fn query_transactions(
        &self,
        condition: &str,
        parameters: impl rusqlite::Params,
    ) -> Result<Vec<TxnRecord>, JournalError> {
        let sql = format!("SELECT {} FROM txn {condition}", Self::TXN_COLUMNS);
        let result = (|| -> Result<Vec<TxnRecord>, Cause> {
            let mut statement = self.connection.prepare(&sql)?;
            let rows = statement.query_map(parameters, Self::txn_from_row)?;
            let mut records = Vec::new();
            for row in rows {
                records.push(row??);
            }
            Ok(records)
        })();
        result.map_err(|cause| self.error(cause))
    }

    fn query_transaction(
        &self,
        condition: &str,
        parameters: impl rusqlite::Params,
    ) -> Result<Option<TxnRecord>, JournalError> {
        Ok(self
            .query_transactions(&format!("{condition} LIMIT 1"), parameters)?
            .pop())
    }

    /// The transaction that did not reach a final state, if any.
    pub fn pending(&self) -> Result<Option<TxnRecord>, JournalError> {
        self.query_transaction(
            "WHERE state NOT IN ('committed', 'rolled_back') ORDER BY id DESC",
            [],
        )
    }

    pub fn transaction(&self, id: i64) -> Result<Option<TxnRecord>, JournalError> {
        self.query_transaction("WHERE id = ?1", [id])
    }

    /// Transactions, newest first.
    pub fn history(&self, limit: Option<u32>) -> Result<Vec<TxnRecord>, JournalError> {
        let limit = limit.map(i64::from).unwrap_or(-1);
        self.query_transactions("ORDER BY id DESC LIMIT ?1", [limit])
    }

    /// The newest upgrade or rollback that reached a final state: what it
    /// left live is live, unless the store was changed by hand since.
    pub fn last_final(&self) -> Result<Option<TxnRecord>, JournalError> {
        self.query_transaction(
            "WHERE state IN ('committed', 'rolled_back') AND kind IN ('upgrade', 'rollback') ORDER BY id DESC",
            [],
        )
    }

    /// The newest committed upgrade or rollback: its archive is the
    /// rollback target.
    pub fn last_committed(&self) -> Result<Option<TxnRecord>, JournalError> {
        self.query_transaction(
            "WHERE state = 'committed' AND kind IN ('upgrade', 'rollback') ORDER BY id DESC",
            [],
        )
    }

    pub fn steps(&self, id: i64) -> Result<Vec<StepRecord>, JournalError> {
        let result = (|| -> Result<Vec<StepRecord>, Cause> {
            let mut statement = self.connection.prepare(
                "SELECT seq, wave, phase, detail, state, started_at, finished_at, error, undo_started_at, undo_finished_at, undo_error, batch, result
                 FROM step WHERE txn_id = ?1 ORDER BY seq",
            )?;
            let mut rows = statement.query([id])?;
            let mut steps = Vec::new();
            // Bounded by the steps of one transaction.
            while let Some(row) = rows.next()? {
                let seq: u32 = row.get(0)?;
                let corrupt =
                    |what: String| Cause::Corrupt(format!("transaction {id} step {seq}: {what}"));
                let phase: String = row.get(2)?;
                let detail: String = row.get(3)?;
                let state: String = row.get(4)?;
                steps.push(StepRecord {
                    seq,
                    wave: row.get(1)?,
                    phase: crate::plan::Phase::parse(&phase)
                        .ok_or_else(|| corrupt(format!("unknown phase {phase:?}")))?,
                    batch: row.get(11)?,
                    action: serde_json::from_str(&detail)
                        .map_err(|e| corrupt(format!("unreadable action: {e}")))?,
                    state: StepState::parse(&state)
                        .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
                    started_at: row.get(5)?,
                    finished_at: row.get(6)?,
                    error: row.get(7)?,
                    undo_started_at: row.get(8)?,
                    undo_finished_at: row.get(9)?,
                    undo_error: row.get(10)?,
                    result: row.get(12)?,
                });
            }
            Ok(steps)
        })();
        result.map_err(|cause| self.error(cause))
    }

    /// The number of transactions recorded.
    pub fn count(&self) -> Result<i64, JournalError> {
        self.connection
            .query_row("SELECT count(*) FROM txn", [], |row| row.get(0))
            .map_err(|error| self.error(error.into()))
    }
}
