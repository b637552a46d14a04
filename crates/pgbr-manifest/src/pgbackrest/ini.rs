//! pgBackRest's info file syntax: `[section]` lines and `key=value` lines whose values are JSON,
//! with a SHA-1 self-checksum in `[backrest] backrest-checksum`.
//!
//! The checksum is SHA-1 of the content rendered as one JSON object, sections and keys in file
//! order (pgBackRest writes both sorted), the checksum itself left out:
//! `{"backrest":{"backrest-format":5,...},"db":{...}}`.

use serde::de::DeserializeOwned;
use sha1::{Digest, Sha1};

use crate::Error;

/// The section and key holding the checksum and format version.
const BACKREST: &str = "backrest";
const CHECKSUM_KEY: &str = "backrest-checksum";
const FORMAT_KEY: &str = "backrest-format";
/// The only format pgBackRest 2.x writes.
pub const BACKREST_FORMAT: u64 = 5;

/// One `[section]` and its `key=value` lines, in file order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Section {
    /// The name between the brackets.
    pub name: String,
    /// Each key with its value as written (JSON text).
    pub entries: Vec<(String, String)>,
}

impl Section {
    /// The entries, but the checksum itself.
    fn hashed_entries(&self) -> Vec<&(String, String)> {
        self.entries
            .iter()
            .filter(|(k, _)| !(self.name == BACKREST && k == CHECKSUM_KEY))
            .collect()
    }
}

/// An info file or manifest in pgBackRest's syntax.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ini {
    /// The sections in file order (pgBackRest ends with a second `[backrest]` holding only the
    /// checksum; it is merged into the first).
    pub sections: Vec<Section>,
}

impl Ini {
    /// Parses `bytes`; `what` names the file in errors. The checksum is not checked here (see
    /// [`Ini::verify`]).
    pub fn parse(bytes: &[u8], what: &str) -> Result<Ini, Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::invalid(what, "it is not UTF-8 text (a pgBackRest info file is)")
        })?;
        let mut ini = Ini::default();
        let mut current: Option<usize> = None;
        // Split on `\n` only: pgBackRest writes no `\r`, and one kept as part of a value (as
        // `lines()` would not, at the end of a line) renders back as it was read.
        for (n, line) in text.split('\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = Some(match ini.sections.iter().position(|s| s.name == name) {
                    Some(i) => i,
                    None => {
                        ini.sections.push(Section {
                            name: name.to_string(),
                            entries: Vec::new(),
                        });
                        ini.sections.len() - 1
                    }
                });
                continue;
            }
            let bad = |reason: &str| Error::invalid(format!("{what}, line {}", n + 1), reason);
            let Some(i) = current else {
                return Err(bad("a key outside any [section]"));
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad("neither [section] nor key=value"));
            };
            let section = &mut ini.sections[i];
            if section.entries.iter().any(|(k, _)| k == key) {
                return Err(bad("a key given twice in its section"));
            }
            section.entries.push((key.to_string(), value.to_string()));
        }
        Ok(ini)
    }

    /// The section named `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The value of `key` in `section`, decoded from its JSON; `None` if absent.
    pub fn get<T: DeserializeOwned>(&self, section: &str, key: &str) -> Result<Option<T>, Error> {
        let Some(raw) = self
            .section(section)
            .and_then(|s| s.entries.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v)
        else {
            return Ok(None);
        };
        decode(raw, &format!("[{section}] {key}")).map(Some)
    }

    /// As [`Ini::get`], for a key that must be there.
    pub fn require<T: DeserializeOwned>(&self, section: &str, key: &str) -> Result<T, Error> {
        self.get(section, key)?
            .ok_or_else(|| Error::invalid(format!("[{section}] {key}"), "it is missing"))
    }

    /// The SHA-1 of the content as pgBackRest computes it.
    pub fn checksum(&self) -> String {
        let mut h = Sha1::new();
        h.update(b"{");
        let mut first_section = true;
        for s in &self.sections {
            let entries = s.hashed_entries();
            if entries.is_empty() {
                continue;
            }
            if !first_section {
                h.update(b",");
            }
            first_section = false;
            h.update(json_string(&s.name).as_bytes());
            h.update(b":{");
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                h.update(json_string(k).as_bytes());
                h.update(b":");
                h.update(v.as_bytes());
            }
            h.update(b"}");
        }
        h.update(b"}");
        hex::encode(h.finalize())
    }

    /// Checks the format version and the self-checksum; `what` names the file in errors.
    pub fn verify(&self, what: &str) -> Result<(), Error> {
        let format: u64 = self.require(BACKREST, FORMAT_KEY)?;
        if format != BACKREST_FORMAT {
            return Err(Error::invalid(
                what,
                format!("pgBackRest format {format}; pgbr reads format {BACKREST_FORMAT} (pgBackRest 2.x)"),
            ));
        }
        let recorded: String = self.require(BACKREST, CHECKSUM_KEY)?;
        let found = self.checksum();
        if recorded != found {
            return Err(Error::ChecksumMismatch {
                expected: recorded,
                found,
            });
        }
        Ok(())
    }

    /// The file as pgBackRest writes it, the checksum computed and placed last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            let entries = s.hashed_entries();
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{}]\n", s.name));
            for (k, v) in entries {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        out.push_str(&format!(
            "\n[{BACKREST}]\n{CHECKSUM_KEY}=\"{}\"\n",
            self.checksum()
        ));
        out
    }
}

/// Decodes one JSON value; `what` names it in errors.
pub(crate) fn decode<T: DeserializeOwned>(raw: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(raw).map_err(|e| Error::invalid(what, e.to_string()))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Written by pgBackRest 2.45 (`archive.info` of a stanza on PostgreSQL 15).
    const ARCHIVE_INFO: &str = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\ndb-id=1\ndb-system-id=7716702285593999242\ndb-version=\"15\"\n\n[db:history]\n1={\"db-id\":7716702285593999242,\"db-version\":\"15\"}\n\n[backrest]\nbackrest-checksum=\"616b8bea20574e0d4c9ffeddf32220b1f241e500\"\n";

    #[test]
    fn pgbackrests_own_file_verifies_and_renders_back() {
        let ini = Ini::parse(ARCHIVE_INFO.as_bytes(), "archive.info").unwrap();
        ini.verify("archive.info").unwrap();
        assert_eq!(ini.render(), ARCHIVE_INFO);
        let id: u64 = ini.require("db", "db-system-id").unwrap();
        assert_eq!(id, 7716702285593999242);
    }

    #[test]
    fn an_edited_file_fails_its_checksum() {
        let edited = ARCHIVE_INFO.replace("db-id=1", "db-id=2");
        let ini = Ini::parse(edited.as_bytes(), "archive.info").unwrap();
        assert!(matches!(
            ini.verify("archive.info"),
            Err(Error::ChecksumMismatch { .. })
        ));
    }

    /// `fuzz/regressions/pgbackrest_formats/value-ending-in-carriage-return`, reduced: a value
    /// ending in `\r` on the last line lost it when rendered and read again, and the checksum
    /// rendered for the first reading no longer matched.
    #[test]
    fn a_carriage_return_ending_a_value_renders_back() {
        let text = "[backrest]\nbackrest-format=5\n[s]\nk=\"v\"\r";
        let ini = Ini::parse(text.as_bytes(), "x").unwrap();
        let back = Ini::parse(ini.render().as_bytes(), "x").unwrap();
        back.verify("x").unwrap();
        assert_eq!(back.sections[1], ini.sections[1]);
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in ["key=1\n", "[s]\nnovalue\n", "[s]\na=1\na=2\n"] {
            assert!(Ini::parse(bad.as_bytes(), "x").is_err(), "{bad:?}");
        }
        assert!(Ini::parse(&[0xff, 0xfe], "x").is_err());
    }

    fn arb_ini() -> impl Strategy<Value = Ini> {
        let key = "[a-z][a-z0-9/_:.-]{0,12}";
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,16}".prop_map(|s| json_string(&s)),
            Just("{}".to_string()),
            Just("true".to_string()),
        ];
        let section =
            (key, prop::collection::btree_map(key, value, 0..6)).prop_map(|(name, kv)| Section {
                name: format!("s:{name}"),
                entries: kv.into_iter().collect(),
            });
        prop::collection::vec(section, 0..5).prop_map(|mut sections| {
            sections.dedup_by(|a, b| a.name == b.name);
            let mut names = std::collections::BTreeSet::new();
            sections.retain(|s| names.insert(s.name.clone()));
            sections.insert(
                0,
                Section {
                    name: BACKREST.into(),
                    entries: vec![(FORMAT_KEY.into(), "5".into())],
                },
            );
            Ini { sections }
        })
    }

    proptest! {
        #[test]
        fn render_then_parse_is_the_same_and_verifies(ini in arb_ini()) {
            let text = ini.render();
            let back = Ini::parse(text.as_bytes(), "x").unwrap();
            back.verify("x").unwrap();
            let mut without_checksum = back.clone();
            without_checksum.sections[0].entries.retain(|(k, _)| k != CHECKSUM_KEY);
            prop_assert_eq!(without_checksum, ini);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(ini) = Ini::parse(&bytes, "x") {
                let _ = ini.verify("x");
            }
        }
    }
}
