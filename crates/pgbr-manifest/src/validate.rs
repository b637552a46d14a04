//! [`Manifest::validate`]: what makes a manifest safe to restore and self-consistent.

use std::collections::{BTreeMap, HashSet};

use crate::label::{full_part, parse_label};
use crate::manifest::{is_sorted, Keyed};
use crate::{BackupType, Error, FileEntry, Manifest, Target};

impl Manifest {
    /// Checks that the manifest is safe to restore and self-consistent:
    ///
    /// - the label is valid and agrees with `backup_type`; a full backup has
    ///   no prior, a diff/incr has a prior from the same full backup chain;
    ///   `references` are valid labels other than this backup's;
    /// - there is a `pg_data` target; target names are `pg_data` or
    ///   `pg_tblspc/<oid>` (matching `tablespace_oid`), listed once, with
    ///   absolute paths;
    /// - every path, link and file name passes [`validate_relative_name`]
    ///   (only a path may be `""`, the target root), names an existing
    ///   target, appears once per target across paths, links and files, and
    ///   does not lie below a file or a link; no entry of `pg_data` lies at or below
    ///   `pg_tblspc/<oid>` of a tablespace target (where that tablespace's link goes);
    /// - file checksums are 64 lowercase hex digits, block hashes 32; block
    ///   maps have `ceil(size / block_size)` blocks; every `reference` is
    ///   listed in `references`.
    pub fn validate(&self) -> Result<(), Error> {
        let references = self.validate_backup()?;
        let targets = self.validate_targets()?;
        self.validate_entries(&targets, &references)?;
        let (links, files) = self.validate_unique()?;
        self.validate_nesting(&links, &files)
    }

    /// The label, type, prior and references; returns the references.
    fn validate_backup(&self) -> Result<HashSet<&str>, Error> {
        let b = &self.backup;
        let (label_type, _) = parse_label(&b.label)?;
        if label_type != b.backup_type {
            return Err(Error::invalid(
                format!("backup {}", b.label),
                format!(
                    "the label says {label_type} but backup_type is {}",
                    b.backup_type
                ),
            ));
        }
        match (&b.prior, b.backup_type) {
            (Some(prior), BackupType::Full) => {
                return Err(Error::invalid(
                    format!("backup {}", b.label),
                    format!("a full backup cannot have a prior backup (found {prior})"),
                ))
            }
            (None, BackupType::Diff | BackupType::Incr) => {
                return Err(Error::invalid(
                    format!("backup {}", b.label),
                    format!("a {} backup needs a prior backup", b.backup_type),
                ))
            }
            (Some(prior), _) => {
                parse_label(prior)?;
                if full_part(prior) != full_part(&b.label) {
                    return Err(Error::invalid(
                        format!("backup {}", b.label),
                        format!("prior backup {prior} belongs to another full backup"),
                    ));
                }
            }
            (None, BackupType::Full) => {}
        }
        let mut references = HashSet::new();
        for r in &b.references {
            parse_label(r)?;
            if *r == b.label {
                return Err(Error::invalid(
                    format!("backup {}", b.label),
                    "references lists the backup itself",
                ));
            }
            if !references.insert(r.as_str()) {
                return Err(Error::invalid(
                    format!("backup {}", b.label),
                    format!("references lists {r} twice"),
                ));
            }
        }
        Ok(references)
    }

    /// Each target valid and listed once, `pg_data` among them; returns their names.
    fn validate_targets(&self) -> Result<HashSet<&str>, Error> {
        let mut targets = HashSet::new();
        for t in &self.targets {
            validate_target(t)?;
            if !targets.insert(t.name.as_str()) {
                return Err(Error::BadTarget {
                    name: t.name.clone(),
                    reason: "listed more than once",
                });
            }
        }
        if !targets.contains("pg_data") {
            return Err(Error::BadTarget {
                name: "pg_data".to_string(),
                reason: "the manifest has no pg_data target",
            });
        }
        Ok(targets)
    }

    /// Each path, link and file: a known target, a safe name, not behind a tablespace's link;
    /// each file's checksum, block map and references.
    fn validate_entries(
        &self,
        targets: &HashSet<&str>,
        references: &HashSet<&str>,
    ) -> Result<(), Error> {
        // Names: known target, safe name. Consecutive entries almost always
        // share their target, so the set is asked only when it changes.
        let mut known: Option<&str> = None;
        let mut check_entry = |target: &str, name: &str, root_allowed: bool| -> Result<(), Error> {
            if known != Some(target) {
                known = Some(
                    targets
                        .get(target)
                        .copied()
                        .ok_or_else(|| Error::UnknownTarget {
                            name: target.to_string(),
                        })?,
                );
            }
            if !(root_allowed && name.is_empty()) {
                validate_relative_name(name)?;
            }
            Ok(())
        };
        // A tablespace target is restored behind the link pg_data/pg_tblspc/<oid>: no entry of
        // pg_data may stand there or below it, or it would be written through that link.
        let shadows_tablespace = |target: &str, name: &str| -> Result<(), Error> {
            let Some(rest) = name.strip_prefix("pg_tblspc/") else {
                return Ok(());
            };
            let oid_dir = rest.split('/').next().unwrap_or(rest);
            if target == "pg_data" && targets.contains(format!("pg_tblspc/{oid_dir}").as_str()) {
                return Err(Error::invalid(
                    format!("entry {name:?} in target \"pg_data\""),
                    format!(
                        "it lies at or below the link of tablespace target pg_tblspc/{oid_dir}"
                    ),
                ));
            }
            Ok(())
        };
        for p in &self.paths {
            check_entry(&p.target, &p.name, true)?;
            shadows_tablespace(&p.target, &p.name)?;
        }
        for l in &self.links {
            check_entry(&l.target, &l.name, false)?;
            shadows_tablespace(&l.target, &l.name)?;
            if l.destination.is_empty() || l.destination.contains('\0') {
                return Err(Error::invalid(
                    format!("link {:?} in target {:?}", l.name, l.target),
                    "destination is empty or contains NUL",
                ));
            }
        }
        for f in &self.files {
            check_entry(&f.target, &f.name, false)?;
            shadows_tablespace(&f.target, &f.name)?;
            self.validate_file(f, references)?;
        }
        Ok(())
    }

    /// Each (target, name) once across paths, links and files; returns the links' and the
    /// files' sorted keys.
    fn validate_unique(
        &self,
    ) -> Result<(SortedKeys<'_, crate::LinkEntry>, SortedKeys<'_, FileEntry>), Error> {
        // Each (target, name) once across paths, links and files: adjacent in
        // each sorted list, looked up in the others.
        let paths = SortedKeys::new(&self.paths);
        let links = SortedKeys::new(&self.links);
        let files = SortedKeys::new(&self.files);
        let duplicate = paths
            .duplicate()
            .or_else(|| links.duplicate())
            .or_else(|| files.duplicate())
            .or_else(|| {
                (0..paths.len())
                    .map(|i| paths.get(i))
                    .find(|&k| links.contains(k) || files.contains(k))
            })
            .or_else(|| {
                (0..links.len())
                    .map(|i| links.get(i))
                    .find(|&k| files.contains(k))
            });
        if let Some((target, name)) = duplicate {
            return Err(Error::Duplicate {
                target: target.to_string(),
                name: name.to_string(),
            });
        }
        Ok((links, files))
    }

    /// Nothing below a file or a link.
    fn validate_nesting(
        &self,
        links: &SortedKeys<'_, crate::LinkEntry>,
        files: &SortedKeys<'_, FileEntry>,
    ) -> Result<(), Error> {
        // Nothing below a file or a link: collect every directory some entry
        // lies below (with one such entry), then look each up among the files
        // and links. Entries of one directory are mostly consecutive, so the
        // walk up is skipped when the parent is the previous entry's.
        let mut dirs: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        let mut last_parent = ("", None);
        // A tablespace's link goes at pg_data/<its name>: its parents count too.
        let tablespace_links = self
            .targets
            .iter()
            .filter(|t| t.name != "pg_data")
            .map(|t| ("pg_data", t.name.as_str()));
        let entries = self
            .paths
            .iter()
            .map(Keyed::key)
            .chain(self.links.iter().map(Keyed::key))
            .chain(self.files.iter().map(Keyed::key))
            .chain(tablespace_links);
        for (target, name) in entries {
            let parent = name.rfind('/').map(|i| &name[..i]);
            if parent.is_none() || (target, parent) == last_parent {
                continue;
            }
            last_parent = (target, parent);
            let mut dir = name;
            while let Some(i) = dir.rfind('/') {
                dir = &dir[..i];
                if dirs.insert((target, dir), name).is_some() {
                    // Its own parents are in already.
                    break;
                }
            }
        }
        for (&(target, dir), &name) in &dirs {
            if links.contains((target, dir)) || files.contains((target, dir)) {
                return Err(Error::NotADirectory {
                    target: target.to_string(),
                    name: name.to_string(),
                    parent: dir.to_string(),
                });
            }
        }
        Ok(())
    }

    fn validate_file(&self, f: &FileEntry, references: &HashSet<&str>) -> Result<(), Error> {
        let what = || format!("file {:?} in target {:?}", f.name, f.target);
        let check_ref = |r: Option<&str>| -> Result<(), Error> {
            match r {
                Some(r) if !references.contains(r) => Err(Error::UnknownReference {
                    target: f.target.to_string(),
                    name: f.name.to_string(),
                    reference: r.to_string(),
                }),
                _ => Ok(()),
            }
        };
        check_ref(f.reference.as_deref())?;
        if let Some(map) = &f.block_map {
            if map.block_size == 0 {
                return Err(Error::invalid(what(), "block map has block_size 0"));
            }
            let expected = f.size.div_ceil(u64::from(map.block_size));
            if map.blocks.len() as u64 != expected {
                return Err(Error::invalid(
                    what(),
                    format!(
                        "block map has {} blocks but size {} needs {expected}",
                        map.blocks.len(),
                        f.size
                    ),
                ));
            }
            for block in &map.blocks {
                check_ref(block.reference.as_deref())?;
                if let Some(base) = &block.base {
                    check_ref(Some(base.reference.as_str()))?;
                }
            }
            check_chain(f, map).map_err(|reason| Error::invalid(what(), reason))?;
        }
        Ok(())
    }
}

/// That the chaining values of `f`'s blocks, when it keeps one for every block, combine into its
/// checksum: a later backup that does not read a block takes its value on trust.
fn check_chain(f: &FileEntry, map: &crate::BlockMapRef) -> Result<(), &'static str> {
    match crate::blocks_checksum(&map.blocks, f.size, u64::from(map.block_size)) {
        Some(sum) if sum != f.checksum => {
            Err("the chaining values of its blocks do not make its checksum")
        }
        _ => Ok(()),
    }
}

/// The `(target, name)` keys of a list in sorted order: the list itself when it
/// is already sorted (every loaded manifest), else a sorted copy of the keys.
enum SortedKeys<'a, T> {
    InPlace(&'a [T]),
    Copied(Vec<(&'a str, &'a str)>),
}

impl<'a, T: Keyed> SortedKeys<'a, T> {
    fn new(items: &'a [T]) -> Self {
        if is_sorted(items) {
            SortedKeys::InPlace(items)
        } else {
            let mut keys: Vec<(&str, &str)> = items.iter().map(Keyed::key).collect();
            keys.sort_unstable();
            SortedKeys::Copied(keys)
        }
    }

    fn len(&self) -> usize {
        match self {
            SortedKeys::InPlace(items) => items.len(),
            SortedKeys::Copied(keys) => keys.len(),
        }
    }

    fn get(&self, i: usize) -> (&'a str, &'a str) {
        match self {
            SortedKeys::InPlace(items) => items[i].key(),
            SortedKeys::Copied(keys) => keys[i],
        }
    }

    fn contains(&self, key: (&str, &str)) -> bool {
        match self {
            SortedKeys::InPlace(items) => items.binary_search_by(|e| e.key().cmp(&key)).is_ok(),
            SortedKeys::Copied(keys) => keys.binary_search(&key).is_ok(),
        }
    }

    /// The first key listed twice.
    fn duplicate(&self) -> Option<(&'a str, &'a str)> {
        (1..self.len())
            .find(|&i| self.get(i) == self.get(i - 1))
            .map(|i| self.get(i))
    }
}

fn validate_target(t: &Target) -> Result<(), Error> {
    let bad = |reason| Error::BadTarget {
        name: t.name.clone(),
        reason,
    };
    if t.name == "pg_data" {
        if t.tablespace_oid.is_some() {
            return Err(bad("pg_data cannot have a tablespace oid"));
        }
    } else if let Some(digits) = t.name.strip_prefix("pg_tblspc/") {
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("name must be pg_data or pg_tblspc/<oid>"));
        }
        let oid: u32 = digits
            .parse()
            .map_err(|_| bad("tablespace oid does not fit in 32 bits"))?;
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(bad("tablespace oid has a leading zero"));
        }
        if t.tablespace_oid.is_some_and(|o| o != oid) {
            return Err(bad("tablespace_oid does not match the target name"));
        }
    } else {
        return Err(bad("name must be pg_data or pg_tblspc/<oid>"));
    }
    if !t.path.starts_with('/') {
        return Err(bad("path is not absolute"));
    }
    if t.path.contains('\0') {
        return Err(bad("path contains NUL"));
    }
    Ok(())
}

/// Checks that `name` is a safe name relative to a target directory: not
/// empty, no leading `/`, no NUL or backslash, and no empty, `.` or `..`
/// component (so no `//` and no trailing `/`).
///
/// The empty name is refused here; a [`PathEntry`](crate::PathEntry) may use `""` for its
/// target's root, which [`Manifest::validate`] allows separately.
pub fn validate_relative_name(name: &str) -> Result<(), Error> {
    let bad = |reason| Error::UnsafeName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("name is empty"));
    }
    if name.starts_with('/') {
        return Err(bad("name is absolute"));
    }
    if name.contains('\0') {
        return Err(bad("name contains NUL"));
    }
    if name.contains('\\') {
        return Err(bad("name contains a backslash"));
    }
    for component in name.split('/') {
        match component {
            "" => return Err(bad("name has an empty component")),
            "." => return Err(bad("name has a '.' component")),
            ".." => return Err(bad("name has a '..' component")),
            _ => {}
        }
    }
    Ok(())
}
