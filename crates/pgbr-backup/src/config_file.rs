//! The configuration file's text, read line by line as pgBackRest reads it: `[section]` headers,
//! `option=value` lines (both sides trimmed), blank lines and comment lines starting with `#` or
//! `;`. A value wholly in quotes (`"..."` or `'...'`) loses them.
//!
//! pgbr reads the file itself rather than through an INI crate because every error must name
//! the file, the line number and the option, and never show the line: a malformed line may hold
//! a passphrase (`repo1-cipher-pass mysecret`).

use std::path::Path;

use crate::error::Error;
use crate::options::OptionName;

/// One `option=value` line.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The section it is in (`global`, `main:backup`).
    pub section: String,
    /// The option name as written.
    pub key: String,
    /// The value, trimmed and unquoted.
    pub value: String,
    /// Its line number, from 1.
    pub line: usize,
}

impl std::fmt::Debug for Entry {
    /// Without the value, which may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("section", &self.section)
            .field("key", &self.key)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// The `PGBR_*` (and pgBackRest's `PGBACKREST_*`) variables of this process's environment, for [`Config::load`](crate::config::Config::load). Unlike
/// `std::env::vars`, which panics on a value that is not UTF-8 and prints it, a `PGBR_*`
/// variable that is not UTF-8 is a configuration error naming the variable (never its value);
/// other variables are not looked at.
pub fn env_vars() -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if !name.starts_with("PGBR_") && !name.starts_with("PGBACKREST_") {
            continue;
        }
        let value = value.into_string().map_err(|_| {
            Error::config(format!(
                "environment variable {name} is not valid UTF-8 (its value is not shown)"
            ))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// A configuration error about line `line` of `path`.
pub(crate) fn line_error(path: &Path, line: usize, what: impl std::fmt::Display) -> Error {
    Error::config(format!(
        "configuration file {} line {line}: {what}",
        path.display()
    ))
}

/// `key` when it can be shown in a message: it has the shape of an option name (lowercase
/// letters, digits and '-', starting with a letter). Anything else is not shown, as it may be
/// part of a value that was wrapped onto its own line.
pub(crate) fn showable_name(key: &str) -> Option<&str> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (first_ok && rest_ok && key.len() <= 64).then_some(key)
}

/// The error for a line that is not `option=value`: it names the option the line starts with,
/// when it starts with one.
fn not_an_option_line(path: &Path, line: usize, text: &str) -> Error {
    let first = text
        .split(|c: char| c.is_whitespace() || c == ':' || c == '=')
        .next()
        .unwrap_or_default();
    match OptionName::parse(first) {
        Some(_) => line_error(
            path,
            line,
            format!("option '{first}' must be followed by '=' (write {first}=VALUE); the line is not shown as it may hold a secret"),
        ),
        None => line_error(
            path,
            line,
            "expected '[section]' or 'option=value'; the line is not shown as it may hold a secret",
        ),
    }
}

/// The value of line `line` without its surrounding quotes.
fn unquote(path: &Path, line: usize, key: &str, value: &str) -> Result<String, Error> {
    let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(value.to_string());
    };
    let inner = &value[1..];
    match inner.find(quote) {
        Some(end) => Ok(format!(
            "{}{}",
            &inner[..end],
            inner[end + 1..].trim_end()
        )),
        None => Err(line_error(
            path,
            line,
            format!("the value of option '{key}' opens a quote ({quote}) that is not closed on this line"),
        )),
    }
}

/// Parses the configuration `text` read from `path` into its `option=value` lines, in order.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, Error> {
    let mut section: Option<String> = None;
    let mut out = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
            continue;
        }
        if let Some(header) = text.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err(line_error(path, line, "a section header must end with ']'"));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(line_error(path, line, "the section name is empty"));
            }
            section = Some(name.to_string());
            continue;
        }
        let Some((key, value)) = text.split_once('=') else {
            return Err(not_an_option_line(path, line, text));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(line_error(path, line, "no option name before '='"));
        }
        if key.contains(|c: char| c.is_whitespace() || c == ':') {
            return Err(not_an_option_line(path, line, text));
        }
        let Some(section) = &section else {
            let what = match showable_name(key) {
                Some(k) => format!("option '{k}' comes before the first [section]"),
                None => "an option comes before the first [section]".to_string(),
            };
            return Err(line_error(
                path,
                line,
                format!("{what}: put it under [global] or a stanza's section"),
            ));
        };
        out.push(Entry {
            section: section.clone(),
            key: key.to_string(),
            value: unquote(path, line, key, value.trim())?,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{check_value, Config};
    use crate::options::Command;
    use crate::test_support::{flags, write_conf};

    const SECRET: &str = "s3cr3t-Marker";

    fn p(text: &str) -> Result<Vec<Entry>, Error> {
        parse(Path::new("/etc/pgbr/pgbr.conf"), text)
    }

    #[test]
    fn sections_options_comments_and_quotes() {
        let e = p("# comment\n; another\n\n[global]\n  repo1-path = /r  \r\nrepo1-cipher-pass=\"a b\"\n[ main ]\npg1-path='/pg'x\n")
            .expect("parse");
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("global", "repo1-path", "/r", 5),
                ("global", "repo1-cipher-pass", "a b", 6),
                ("main", "pg1-path", "/pgx", 8),
            ]
        );
        assert!(!format!("{e:?}").contains("a b"));
    }

    #[test]
    fn malformed_lines_name_the_line_and_option_never_the_text() {
        for (text, line, needle) in [
            (
                format!("[global]\nrepo1-cipher-pass {SECRET}\n"),
                2,
                "option 'repo1-cipher-pass' must be followed by '='",
            ),
            (
                format!("[global]\nrepo1-cipher-pass:{SECRET}\n"),
                2,
                "option 'repo1-cipher-pass'",
            ),
            (
                format!("[global]\nrepo1-cipher-pass {SECRET}=x\n"),
                2,
                "option 'repo1-cipher-pass'",
            ),
            (format!("[global]\n{SECRET}\n"), 2, "expected '[section]'"),
            (format!("[global]\n=\"{SECRET}\"\n"), 2, "no option name"),
            (
                format!("[global]\nrepo1-cipher-pass=\"{SECRET}\n"),
                2,
                "not closed",
            ),
            (format!("[global\nrepo1-cipher-pass={SECRET}\n"), 1, "']'"),
            (
                format!("repo1-cipher-pass={SECRET}\n"),
                1,
                "option 'repo1-cipher-pass' comes before the first [section]",
            ),
        ] {
            let e = p(&text).expect_err(&text).to_string();
            assert!(
                e.contains(&format!("/etc/pgbr/pgbr.conf line {line}:")),
                "{e}"
            );
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn an_option_set_twice_in_a_section_is_refused_but_a_list_is_not() {
        for text in [
            "[global]\nrepo1-path=/a\nprocess-max=2\nrepo1-path=/b\n",
            // The same section opened twice is one section.
            "[global]\nrepo1-path=/a\n[main]\npg1-path=/p\n[global]\nprocess-max=2\nrepo1-path=/b\n",
        ] {
            let (_d, path) = write_conf(text);
            let p = path.display().to_string();
            let e = Config::load(
                Command::Info,
                &flags(&[("config", &p), ("stanza", "main")]),
                vec![],
            )
            .expect_err("duplicate")
            .to_string();
            let last = text.lines().count();
            for needle in [
                format!("{p} line {last}:"),
                "'repo1-path'".into(),
                "[global]".into(),
                "also on line 2".into(),
            ] {
                assert!(e.contains(&needle), "{needle} not in {e}");
            }
        }
        // The same option in two sections is precedence, not a duplicate.
        let (_d, path) = write_conf("[global]\nrepo1-path=/a\n[main]\nrepo1-path=/b\n");
        let p = path.display().to_string();
        let c = Config::load(
            Command::Info,
            &flags(&[("config", &p), ("stanza", "main")]),
            vec![],
        )
        .expect("load");
        assert_eq!(c.options.get("repo1-path").as_deref(), Some("/b"));
        // A list option takes every line, as pgBackRest's do.
        let (_d, path) =
            write_conf("[global:restore]\ntablespace-map=16385=/ts1\ntablespace-map=big=/ts2\n");
        let p = path.display().to_string();
        let c = Config::load(
            Command::Restore,
            &flags(&[("config", &p), ("stanza", "main"), ("pg1-path", "/r")]),
            vec![],
        )
        .expect("load");
        assert_eq!(c.restore().expect("restore").tablespace_map.len(), 2);
    }

    #[test]
    fn secret_values_stay_out_of_errors_and_debug_output() {
        const SECRET: &str = "Mk7-s3cr3t";
        let (_d, path) = write_conf(&format!(
            "[global]\nrepo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={SECRET}\nrepo2-type=s3\nrepo2-s3-bucket=b\nrepo2-s3-key={SECRET}\nrepo2-s3-key-secret={SECRET}\nrepo2-s3-token={SECRET}\nrepo3-type=azure\nrepo3-azure-account=a\nrepo3-azure-container=c\nrepo3-azure-key={SECRET}\n"
        ));
        let p = path.display().to_string();
        let c = Config::load(
            Command::Info,
            &flags(&[("config", &p), ("stanza", "main")]),
            vec![("PGBR_REPO4_GCS_KEY".into(), SECRET.into())],
        )
        .expect("load");
        let debug = format!("{c:?} {:?}", c.repos().expect("repos"));
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("repo1-cipher-pass"), "{debug}");
        // An invalid value of a secret option is not shown (only an empty one is invalid today).
        let def = OptionName::parse("repo1-cipher-pass").expect("known").def;
        let e = check_value(def, "repo1-cipher-pass", "").expect_err("empty");
        assert!(e.contains("not shown"), "{e}");
    }

    #[test]
    fn only_option_shaped_keys_are_shown() {
        assert_eq!(showable_name("repo1-pth"), Some("repo1-pth"));
        assert_eq!(showable_name("AKIAEXAMPLE"), None);
        assert_eq!(showable_name("abc+def/ghi"), None);
        assert_eq!(showable_name("1abc"), None);
    }
}
