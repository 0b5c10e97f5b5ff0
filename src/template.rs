//! What identifies a template, and what fingerprints its contents: the
//! vocabulary the planner, the journal and the host share about templates.
//! Pure data; the host computes these, the plan and the journal record them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What identifies a template across renames and reboots: the inode of a
/// directory, the UUID of a btrfs subvolume (every subvolume root is inode
/// 256), the GUID of a ZFS dataset.
///
/// An inode is written to the journal as a plain number, as journals before
/// store kinds existed wrote it; the others as `subvolume:UUID` and
/// `dataset:GUID`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateId {
    Inode(u64),
    Subvolume(String),
    Dataset(String),
}

impl TemplateId {
    /// The inode, for the journal's integer columns (0 for other kinds).
    pub fn inode(&self) -> u64 {
        match self {
            TemplateId::Inode(inode) => *inode,
            _ => 0,
        }
    }

    /// The form stored in the journal's text columns.
    pub fn to_text(&self) -> String {
        match self {
            TemplateId::Inode(inode) => inode.to_string(),
            TemplateId::Subvolume(uuid) => format!("subvolume:{uuid}"),
            TemplateId::Dataset(guid) => format!("dataset:{guid}"),
        }
    }

    /// Reads the form [`TemplateId::to_text`] writes.
    pub fn parse(text: &str) -> Option<TemplateId> {
        if let Some(uuid) = text.strip_prefix("subvolume:") {
            return (!uuid.is_empty()).then(|| TemplateId::Subvolume(uuid.to_string()));
        }
        if let Some(guid) = text.strip_prefix("dataset:") {
            return (!guid.is_empty()).then(|| TemplateId::Dataset(guid.to_string()));
        }
        text.parse().ok().map(TemplateId::Inode)
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateId::Inode(inode) => write!(f, "inode {inode}"),
            TemplateId::Subvolume(uuid) => write!(f, "subvolume {uuid}"),
            TemplateId::Dataset(guid) => write!(f, "dataset guid {guid}"),
        }
    }
}

impl Serialize for TemplateId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TemplateId::Inode(inode) => serializer.serialize_u64(*inode),
            other => serializer.serialize_str(&other.to_text()),
        }
    }
}

impl<'de> Deserialize<'de> for TemplateId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(inode) => Ok(TemplateId::Inode(inode)),
            Raw::Text(text) => TemplateId::parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not a template identity"))
            }),
        }
    }
}

/// A template's fingerprint: how many entries it has and the digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub entries: u64,
    pub sha256: String,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} entries, sha256 {}", self.entries, self.sha256)
    }
}

/// Lower-case hexadecimal, as digests are printed.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The name `stage` builds a template under before it has passed: it starts
/// with a dot, so it is not a plain name and no upgrade accepts it, and it
/// names the template it will become.
pub fn staging_name(name: &str) -> String {
    format!(".jailswap-stage.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Identities survive the journal's text form and the plan's JSON, and an
    // inode stays a plain number as older journals wrote it.
    #[test]
    fn template_ids_round_trip() {
        for id in [
            TemplateId::Inode(4242),
            TemplateId::Subvolume("0f1e2d3c-aaaa-bbbb-cccc-000000000001".into()),
            TemplateId::Dataset("1234567890123456789".into()),
        ] {
            assert_eq!(TemplateId::parse(&id.to_text()), Some(id.clone()));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<TemplateId>(&json).unwrap(), id);
        }
        assert_eq!(serde_json::to_string(&TemplateId::Inode(7)).unwrap(), "7");
        assert_eq!(TemplateId::parse("subvolume:"), None);
        assert_eq!(TemplateId::parse("x"), None);
        assert!(serde_json::from_str::<TemplateId>("\"garbage\"").is_err());
    }
}
