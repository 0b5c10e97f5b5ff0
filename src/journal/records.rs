//! What the journal holds, as types: transaction and step records, their
//! states, and who started them. States are parsed strictly: a value the
//! journal should never hold means the journal is corrupt, not a default.

use crate::plan::{Action, Phase, Plan, TransactionKind};
use crate::template::TemplateId;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Planned,
    Started,
    Done,
    Failed,
    Undoing,
    Undone,
    UndoFailed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Planned => "planned",
            StepState::Started => "started",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Undoing => "undoing",
            StepState::Undone => "undone",
            StepState::UndoFailed => "undo_failed",
        }
    }

    pub fn parse(text: &str) -> Option<StepState> {
        Some(match text {
            "planned" => StepState::Planned,
            "started" => StepState::Started,
            "done" => StepState::Done,
            "failed" => StepState::Failed,
            "undoing" => StepState::Undoing,
            "undone" => StepState::Undone,
            "undo_failed" => StepState::UndoFailed,
            _ => return None,
        })
    }

    /// Whether the step's action may have taken effect and not been undone.
    pub fn may_be_in_effect(self) -> bool {
        matches!(
            self,
            StepState::Started | StepState::Done | StepState::Undoing | StepState::UndoFailed
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    Running,
    RollingBack,
    NeedsOperator,
    /// A rolling upgrade stopped by `--pause-after`, waiting for the operator.
    Paused,
    Committed,
    RolledBack,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Running => "running",
            TxnState::RollingBack => "rolling_back",
            TxnState::NeedsOperator => "needs_operator",
            TxnState::Paused => "paused",
            TxnState::Committed => "committed",
            TxnState::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<TxnState> {
        Some(match text {
            "running" => TxnState::Running,
            "rolling_back" => TxnState::RollingBack,
            "needs_operator" => TxnState::NeedsOperator,
            "paused" => TxnState::Paused,
            "committed" => TxnState::Committed,
            "rolled_back" => TxnState::RolledBack,
            _ => return None,
        })
    }

    pub fn is_pending(self) -> bool {
        !self.is_final()
    }

    pub fn is_final(self) -> bool {
        matches!(self, TxnState::Committed | TxnState::RolledBack)
    }
}

/// Who started a transaction, from where, and why.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Audit {
    pub user: String,
    pub uid: u32,
    pub hostname: String,
    pub command_line: String,
    pub reason: Option<String>,
    /// Fingerprints of the outgoing and incoming templates.
    pub from_fingerprint: Option<String>,
    pub to_fingerprint: Option<String>,
}

impl Audit {
    /// The invoking user (the login behind `sudo` when set), host and the
    /// command line, quoted so that it can be pasted back into a shell.
    pub fn current(reason: Option<String>) -> Audit {
        let uid = nix::unistd::getuid();
        let login = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let user = match std::env::var("SUDO_USER") {
            Ok(sudo) if !sudo.is_empty() && sudo != login => format!("{login} (sudo by {sudo})"),
            _ => login,
        };
        Audit {
            user,
            uid: uid.as_raw(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            command_line: shell_words(std::env::args()),
            reason,
            from_fingerprint: None,
            to_fingerprint: None,
        }
    }
}

/// Joins words into one shell command line, quoting where a shell would
/// split or expand them. A word with control characters (a line feed in a
/// reason, an escape sequence) is written in `$'...'` quotes with each
/// written as an escape, as sh(1), bash and zsh read it back, so that the
/// line stays one line, pastes back as the same words, and cannot drive
/// the terminal it is printed on.
pub fn shell_words(words: impl IntoIterator<Item = String>) -> String {
    words
        .into_iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                word
            } else if word.chars().any(char::is_control) {
                let mut quoted = String::from("$'");
                for c in word.chars() {
                    match c {
                        '\\' => quoted.push_str("\\\\"),
                        '\'' => quoted.push_str("\\'"),
                        '\n' => quoted.push_str("\\n"),
                        '\t' => quoted.push_str("\\t"),
                        '\r' => quoted.push_str("\\r"),
                        c if (c as u32) < 0x80 && c.is_control() => {
                            quoted.push_str(&format!("\\x{:02x}", c as u32))
                        }
                        c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
                        c => quoted.push(c),
                    }
                }
                quoted.push('\'');
                quoted
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One step as the journal holds it.
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub seq: u32,
    pub wave: u32,
    pub phase: Phase,
    pub batch: Option<u32>,
    pub action: Action,
    pub state: StepState,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub undo_started_at: Option<String>,
    pub undo_finished_at: Option<String>,
    pub undo_error: Option<String>,
    /// What the step produced, as JSON (see `executor::StepOutput`).
    pub result: Option<String>,
}

/// One transaction as the journal holds it.
#[derive(Clone, Debug)]
pub struct TxnRecord {
    pub id: i64,
    pub kind: TransactionKind,
    pub state: TxnState,
    pub from_label: String,
    pub to_label: String,
    pub archive_as: String,
    pub target: String,
    pub from_id: TemplateId,
    pub to_id: TemplateId,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub downtime_ms: Option<i64>,
    pub downtime_jails: Option<String>,
    pub user: String,
    pub hostname: String,
    pub command_line: String,
    pub reason: Option<String>,
    pub interrupted_recoveries: u32,
    pub attention: Option<String>,
    pub error: Option<String>,
    pub plan_json: String,
    pub from_fingerprint: Option<String>,
    pub to_fingerprint: Option<String>,
}

impl TxnRecord {
    pub fn plan(&self) -> Result<Plan, String> {
        serde_json::from_str(&self.plan_json)
            .map_err(|error| format!("transaction {}: plan unreadable: {error}", self.id))
    }

    /// The outcome as `history` and the JSON name it: the final state, or
    /// `pending` (with `paused` kept apart: the operator chose it).
    pub fn outcome(&self) -> &'static str {
        match self.state {
            TxnState::Running | TxnState::RollingBack | TxnState::NeedsOperator => "pending",
            other => other.as_str(),
        }
    }
}

/// What happened to one step, written in one group commit with its wave.
#[derive(Clone, Debug)]
pub struct StepResult {
    pub seq: u32,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What the step produced, as JSON, when it produced something.
    pub output: Option<String>,
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now() -> String {
    timestamp(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every state reads back as itself, and anything else is refused.
    #[test]
    fn states_parse_strictly() {
        for state in [
            StepState::Planned,
            StepState::Started,
            StepState::Done,
            StepState::Failed,
            StepState::Undoing,
            StepState::Undone,
            StepState::UndoFailed,
        ] {
            assert_eq!(StepState::parse(state.as_str()), Some(state));
        }
        for state in [
            TxnState::Running,
            TxnState::RollingBack,
            TxnState::NeedsOperator,
            TxnState::Paused,
            TxnState::Committed,
            TxnState::RolledBack,
        ] {
            assert_eq!(TxnState::parse(state.as_str()), Some(state));
        }
        assert_eq!(StepState::parse("garbage"), None);
        assert_eq!(TxnState::parse(""), None);
    }

    // Command lines are quoted so that they can be pasted back.
    #[test]
    fn command_lines_are_quoted() {
        let words = [
            "jailswap",
            "upgrade",
            "--reason",
            "13.3 security fix",
            "it's",
        ];
        assert_eq!(
            shell_words(words.map(String::from)),
            "jailswap upgrade --reason '13.3 security fix' 'it'\\''s'"
        );
        let words = ["--reason", "two\nlines, it's \\ \u{1b}[31mred\u{9b}"];
        assert_eq!(
            shell_words(words.map(String::from)),
            r"--reason $'two\nlines, it\'s \\ \x1b[31mred\u009b'"
        );
    }
}
