//! Every change a restore makes to its destinations, planned and checked before the first one.
//!
//! The plan holds what is removed (entries of a destination the backup does not have), the
//! directories and links created, and where each file goes. It is built from the manifest and
//! from what the destinations hold ([`Tree`]), and checked: every path lies inside its
//! destination, and nothing is written through a link (the only links left in place are the
//! backup's own, and the manifest puts nothing below them). Only then does the restore start
//! changing anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use pgbr_manifest::{FileEntry, Manifest};

use super::destination::{Found, MARKER};
use crate::error::{Error, Result};

/// What an entry of a destination is (a link is not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file (or anything else that is not a directory or a link).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
}

/// What the destinations hold.
pub(super) trait Tree {
    /// The entries of directory `dir`: name and kind.
    fn list(&self, dir: &Path) -> Result<Vec<(OsString, Kind)>>;
}

/// The destinations as they are on disk.
pub(super) struct Disk;

impl Tree for Disk {
    fn list(&self, dir: &Path) -> Result<Vec<(OsString, Kind)>> {
        let entries = fs::read_dir(dir).map_err(|e| Error::io("unable to list", dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("unable to list", dir, e))?;
            let t = entry
                .file_type()
                .map_err(|e| Error::io("unable to stat", entry.path(), e))?;
            let kind = if t.is_dir() {
                Kind::Dir
            } else if t.is_symlink() {
                Kind::Link
            } else {
                Kind::File
            };
            out.push((entry.file_name(), kind));
        }
        Ok(out)
    }
}

/// The mode a restored directory gets: what PostgreSQL creates (0700, or 0750 for a cluster
/// with group access), whatever the manifest says.
pub(super) fn dir_mode(mode: u32) -> u32 {
    (mode & 0o750) | 0o700
}

/// The mode a restored file gets: 0600, or 0640 for a cluster with group access; never
/// setuid, setgid, sticky, executable or writable by others.
pub(super) fn file_mode(mode: u32) -> u32 {
    (mode & 0o640) | 0o600
}

/// Every change a restore makes, in order: removals, directories, links, then the files.
#[derive(Debug)]
pub(super) struct Plan {
    /// Where each target goes.
    pub dests: BTreeMap<String, PathBuf>,
    /// Entries of the destinations the backup does not have, removed first (a directory with
    /// all it holds).
    pub removals: Vec<(PathBuf, Kind)>,
    /// Directories created (or kept), parents first, with their modes.
    pub directories: Vec<(PathBuf, u32)>,
    /// Links: where each is made, and where it leads.
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// The manifest's names of one target, as the plan checks and keeps them.
#[derive(Default)]
struct TargetNames<'m> {
    dirs: HashSet<&'m str>,
    links: HashSet<&'m str>,
    /// First components of every name: in a tablespace, the version directories the backup
    /// has; other entries at a tablespace's top belong to other clusters and stay.
    tops: HashSet<&'m str>,
}

impl Plan {
    /// Plans the restore of `manifest` into `dests`, whose contents `found` describes and `tree`
    /// lists. Refuses (before anything is changed) a plan that would write outside a
    /// destination or through a link.
    pub fn new(
        manifest: &Manifest,
        dests: &BTreeMap<String, PathBuf>,
        found: &BTreeMap<String, Found>,
        tree: &dyn Tree,
    ) -> Result<Plan> {
        let mut names: HashMap<&str, TargetNames> = HashMap::new();
        for t in &manifest.targets {
            names.entry(t.name.as_str()).or_default();
            if t.name != "pg_data" {
                names
                    .entry("pg_data")
                    .or_default()
                    .links
                    .insert(t.name.as_str());
            }
        }
        for p in &manifest.paths {
            let n = names.entry(p.target.as_str()).or_default();
            n.dirs.insert(p.name.as_str());
            n.tops.insert(top(&p.name));
        }
        for l in &manifest.links {
            let n = names.entry(l.target.as_str()).or_default();
            n.links.insert(l.name.as_str());
            n.tops.insert(top(&l.name));
        }
        for f in &manifest.files {
            names
                .entry(f.target.as_str())
                .or_default()
                .tops
                .insert(top(&f.name));
        }
        let dest_of = |target: &str| {
            dests.get(target).ok_or_else(|| {
                refused(format!(
                    "the backup's manifest names target {target}, which has no destination"
                ))
            })
        };
        let index = manifest.file_index();
        let mut removals = Vec::new();
        for t in &manifest.targets {
            if !found.get(&t.name).is_some_and(|f| f.has_old_entries()) {
                continue;
            }
            let n = &names[t.name.as_str()];
            let keep = |rel: &str, kind: Kind| match kind {
                Kind::File => index.position(manifest, &t.name, rel).is_some(),
                Kind::Dir => n.dirs.contains(rel),
                Kind::Link => n.links.contains(rel),
            };
            let scope = Scope {
                keep: &keep,
                tablespace_tops: (t.name != "pg_data").then_some(&n.tops),
            };
            plan_removals(tree, dest_of(&t.name)?, "", &scope, &mut removals)?;
        }
        let mut directories = Vec::with_capacity(manifest.paths.len());
        let mut paths: Vec<_> = manifest.paths.iter().collect();
        paths.sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
        for p in paths {
            let n = &names[p.target.as_str()];
            let path = place(
                dest_of(&p.target)?,
                &p.target,
                &p.name,
                &n.links,
                p.name.is_empty(),
            )?;
            directories.push((path, dir_mode(p.mode)));
        }
        let mut links = Vec::new();
        let pg_dest = dest_of("pg_data")?;
        let pg_links = &names["pg_data"].links;
        for t in manifest.targets.iter().filter(|t| t.name != "pg_data") {
            let at = place(pg_dest, "pg_data", &t.name, pg_links, false)?;
            links.push((at, dest_of(&t.name)?.clone()));
        }
        for l in &manifest.links {
            let n = &names[l.target.as_str()];
            let at = place(dest_of(&l.target)?, &l.target, &l.name, &n.links, false)?;
            links.push((at, PathBuf::from(&l.destination)));
        }
        for f in &manifest.files {
            let n = &names[f.target.as_str()];
            place(dest_of(&f.target)?, &f.target, &f.name, &n.links, false)?;
        }
        Ok(Plan {
            dests: dests.clone(),
            removals,
            directories,
            links,
        })
    }

    /// Where file `f` of the manifest goes (checked by [`Plan::new`]).
    pub fn file_path(&self, f: &FileEntry) -> PathBuf {
        self.dests[f.target.as_str()].join(f.name.as_str())
    }
}

/// The first component of a name.
fn top(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

fn refused(why: String) -> Error {
    Error::RestoreTarget(format!("refusing to restore: {why}; nothing was written"))
}

/// `name` of `target` under its destination `dest`, checked: a plain relative name (the
/// destination itself only where `root_allowed`), not at or below one of the target's `links`.
fn place(
    dest: &Path,
    target: &str,
    name: &str,
    links: &HashSet<&str>,
    root_allowed: bool,
) -> Result<PathBuf> {
    if name.is_empty() && root_allowed {
        return Ok(dest.to_path_buf());
    }
    let plain = !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !name.ends_with('/')
        && !name.contains("//");
    if !plain {
        return Err(refused(format!(
            "the backup's manifest names {name:?} in {target}, which is not a plain name inside {}",
            dest.display()
        )));
    }
    let mut at = name;
    while let Some(i) = at.rfind('/') {
        at = &at[..i];
        if links.contains(at) {
            return Err(refused(format!(
                "the backup's manifest puts {target}/{name} below the link {target}/{at}, which leads out of {}",
                dest.display()
            )));
        }
    }
    Ok(dest.join(name))
}

/// What [`plan_removals`] keeps in one destination.
struct Scope<'a> {
    /// Whether the backup has an entry of this name (relative to the destination) and kind.
    keep: &'a dyn Fn(&str, Kind) -> bool,
    /// In a tablespace: the names at its top that the backup has. Other entries there
    /// (another major version's directory) are left alone.
    tablespace_tops: Option<&'a HashSet<&'a str>>,
}

/// Adds to `out` the entries below `dir` (`rel` below the destination) that the backup does
/// not have, directory by directory (a directory removed is not looked into).
fn plan_removals(
    tree: &dyn Tree,
    dir: &Path,
    rel: &str,
    scope: &Scope,
    out: &mut Vec<(PathBuf, Kind)>,
) -> Result<()> {
    for (name, kind) in tree.list(dir)? {
        let path = dir.join(&name);
        // A name that is not UTF-8 is in no manifest.
        let child = name.to_str().map(|name| match rel {
            "" => name.to_string(),
            _ => format!("{rel}/{name}"),
        });
        if rel.is_empty() {
            if name == MARKER {
                continue;
            }
            if let Some(tops) = scope.tablespace_tops {
                if !child.as_deref().is_some_and(|c| tops.contains(c)) {
                    continue;
                }
            }
        }
        match child.as_deref() {
            Some(c) if (scope.keep)(c, kind) => {
                if kind == Kind::Dir {
                    plan_removals(tree, &path, c, scope, out)?;
                }
            }
            _ => out.push((path, kind)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
