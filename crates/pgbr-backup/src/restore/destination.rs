//! Where a restore writes, and whether it may write there: the safety model.
//!
//! Each target of the backup (the data directory, each tablespace) has a destination. A
//! destination is written only when it is
//! - absent or an empty directory, or
//! - with `--delta` or `--force`: a directory of the backup's own cluster — a data directory
//!   whose `global/pg_control` names the backup's system identifier and major version, or a
//!   tablespace directory that such a data directory links to — or what an interrupted pgbr
//!   restore of that cluster left (its marker, [`MARKER`]);
//!
//! and never when a PostgreSQL server running on this host uses it (its `postmaster.pid`, its
//! data directory, tablespaces or `pg_wal`), or when destinations lie one inside another.
//! Anything else is refused, naming the directory and why, before anything is written.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use pgbr_manifest::Manifest;

use super::live::{overlaps, resolved, LiveCluster};
use crate::config::RestoreOptions;
use crate::error::{Error, Result};

/// Written at the top of every destination before a restore changes anything, removed once
/// it is complete: a destination holding it is an interrupted restore of the cluster it names,
/// which `--delta`/`--force` may take up again.
pub(super) const MARKER: &str = "pgbr-restore.inprogress";

/// What a destination held before the restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Nothing: it is created.
    Nothing,
    /// An empty directory.
    Empty,
    /// A data directory of the backup's cluster, or a tablespace directory it links to.
    SameCluster,
    /// What an interrupted restore of the backup's cluster left.
    Interrupted,
}

impl Found {
    /// Whether the destination may hold files the backup does not have (to be removed).
    pub fn has_old_entries(self) -> bool {
        matches!(self, Found::SameCluster | Found::Interrupted)
    }
}

/// Where each target of the manifest goes: `pg1-path`, the `--tablespace-map` entry of a
/// tablespace, else the tablespace's path at backup time.
pub(super) fn destinations(
    manifest: &Manifest,
    opts: &RestoreOptions,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut used_map_keys = HashSet::new();
    for t in &manifest.targets {
        let dest = if t.name == "pg_data" {
            opts.pg_path.clone()
        } else {
            let by_oid = t.tablespace_oid.map(|o| o.to_string());
            let by_name = t.tablespace_name.clone();
            let mapped = [by_oid, by_name]
                .into_iter()
                .flatten()
                .find_map(|k| opts.tablespace_map.get(&k).map(|p| (k, p.clone())));
            match mapped {
                Some((k, p)) => {
                    used_map_keys.insert(k);
                    p
                }
                None => PathBuf::from(&t.path),
            }
        };
        if !dest.is_absolute() {
            return Err(Error::RestoreTarget(format!(
                "destination of {} must be an absolute path, not {}",
                t.name,
                dest.display()
            )));
        }
        out.insert(t.name.clone(), dest);
    }
    for key in opts.tablespace_map.keys() {
        if !used_map_keys.contains(key) {
            return Err(Error::config(format!(
                "option 'tablespace-map': the backup has no tablespace with OID or name '{key}'"
            )));
        }
    }
    let resolved: Vec<(&String, PathBuf)> = out.iter().map(|(t, d)| (t, resolved(d))).collect();
    for (i, (a, da)) in resolved.iter().enumerate() {
        for (b, db) in &resolved[i + 1..] {
            if overlaps(da, db) {
                return Err(Error::RestoreTarget(format!(
                    "the destinations of {a} ({}) and {b} ({}) are the same directory or lie one inside the other; give the tablespace a directory of its own with --tablespace-map",
                    out[*a].display(),
                    out[*b].display()
                )));
            }
        }
    }
    Ok(out)
}

/// Checks every destination (see the module's rules) and the backup's links; returns what
/// each destination holds. Nothing is written.
pub(super) fn check(
    manifest: &Manifest,
    dests: &BTreeMap<String, PathBuf>,
    opts: &RestoreOptions,
    live: &[LiveCluster],
) -> Result<BTreeMap<String, Found>> {
    for (target, dest) in dests {
        refuse_if_live(target, dest, live)?;
    }
    refuse_links_into_live(manifest, dests, live)?;
    let pg_dest = &opts.pg_path;
    let pg_found = classify_data_dir(manifest, pg_dest, opts)?;
    let mut found = BTreeMap::from([("pg_data".to_string(), pg_found)]);
    for t in manifest.targets.iter().filter(|t| t.name != "pg_data") {
        let dest = &dests[&t.name];
        let what = format!(
            "tablespace {}{}",
            t.name,
            t.tablespace_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        let f = classify_tablespace(manifest, &what, &t.name, dest, pg_dest, pg_found, opts)?;
        found.insert(t.name.clone(), f);
    }
    Ok(found)
}

/// Refuses a destination a running server uses.
fn refuse_if_live(target: &str, dest: &Path, live: &[LiveCluster]) -> Result<()> {
    let real = resolved(dest);
    for cluster in live {
        if let Some(used) = cluster.overlap(&real) {
            return Err(Error::RestoreTarget(format!(
                "restore destination {} of {target} is used by the PostgreSQL server running on this host (pid {}, data directory {}; it uses {}): restoring there would overwrite that cluster. Stop that server, or restore elsewhere (--pg1-path, --tablespace-map)",
                dest.display(),
                cluster.pid,
                cluster.data_dir.display(),
                used.display()
            )));
        }
    }
    Ok(())
}

/// Refuses a backup whose links (`pg_wal` made with `initdb --waldir`, ...) lead into a
/// directory a running server uses: the restored cluster would write there too.
fn refuse_links_into_live(
    manifest: &Manifest,
    dests: &BTreeMap<String, PathBuf>,
    live: &[LiveCluster],
) -> Result<()> {
    for link in &manifest.links {
        // A relative link leads from the directory it is restored in.
        let Some(dest) = dests.get(&link.target) else {
            continue;
        };
        let at = dest.join(&link.name);
        let from = at.parent().unwrap_or(dest);
        let real = resolved(&from.join(&link.destination));
        for cluster in live {
            if let Some(used) = cluster.overlap(&real) {
                return Err(Error::RestoreTarget(format!(
                    "the backup's link {}/{} leads to {}, which the PostgreSQL server running on this host uses (pid {}, data directory {}; {}): the restored cluster would write into it too. Stop that server before restoring",
                    link.target,
                    link.name,
                    link.destination,
                    cluster.pid,
                    cluster.data_dir.display(),
                    used.display()
                )));
            }
        }
    }
    Ok(())
}

/// What the destination `dest` of a target holds, when it is absent or an empty directory;
/// `None` when it holds something. Refuses what is not a directory.
fn absent_or_empty(target: &str, dest: &Path) -> Result<Option<Found>> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(Found::Nothing)),
        Err(e) => Err(Error::io("unable to inspect restore destination", dest, e)),
        Ok(m) if !m.is_dir() => Err(Error::RestoreTarget(format!(
            "restore destination {} of {target} exists and is not a directory",
            dest.display()
        ))),
        Ok(_) => {
            let empty = fs::read_dir(dest)
                .map_err(|e| Error::io("unable to list restore destination", dest, e))?
                .next()
                .is_none();
            Ok(empty.then_some(Found::Empty))
        }
    }
}

/// Refuses a non-empty destination without `--delta` or `--force`.
fn refuse_without_delta(dest: &Path, opts: &RestoreOptions) -> Result<()> {
    if opts.delta || opts.force {
        return Ok(());
    }
    Err(Error::RestoreTarget(format!(
        "restore destination {} is not empty: restore into an empty directory, or pass --delta to rewrite only what differs (or --force to rewrite everything)",
        dest.display()
    )))
}

/// Classifies the data directory's destination.
fn classify_data_dir(manifest: &Manifest, dest: &Path, opts: &RestoreOptions) -> Result<Found> {
    if dest.join("postmaster.pid").exists() {
        return Err(Error::RestoreTarget(format!(
            "{}/postmaster.pid exists: a PostgreSQL server may be running there; stop it (and remove a stale postmaster.pid) before restoring",
            dest.display()
        )));
    }
    if let Some(found) = absent_or_empty("pg_data", dest)? {
        return Ok(found);
    }
    refuse_without_delta(dest, opts)?;
    if let Some(found) = interrupted(manifest, dest)? {
        return Ok(found);
    }
    let b = &manifest.backup;
    let refuse = |why: String| {
        Err(Error::RestoreTarget(format!(
            "restore destination {} {why}; --delta and --force only rewrite a data directory of the backup's cluster (system {}, PostgreSQL {}). Restore into an empty or new directory",
            dest.display(),
            b.system_id,
            b.pg_version
        )))
    };
    // pg_control identifies the cluster; PG_VERSION, when there, must agree (a delta restore
    // repairs a data directory that lost it).
    let version = match fs::read_to_string(dest.join("PG_VERSION")) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("unable to read", dest.join("PG_VERSION"), e)),
    };
    let control = match fs::read(dest.join("global/pg_control")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return refuse(match version {
                Some(_) => format!(
                    "holds PG_VERSION but no global/pg_control (and no {MARKER} of an interrupted pgbr restore)"
                ),
                None => "is not empty and is not a PostgreSQL data directory (no global/pg_control, no PG_VERSION)".into(),
            })
        }
        Err(e) => return Err(Error::io("unable to read", dest.join("global/pg_control"), e)),
    };
    let control = match pgbr_wal::ControlFile::parse(&control) {
        Ok(c) => c,
        Err(e) => {
            return refuse(format!(
                "has a global/pg_control that does not verify ({e})"
            ))
        }
    };
    let major = version
        .or_else(|| control.pg_major_version().map(|v| v.to_string()))
        .unwrap_or_else(|| "?".into());
    if control.system_identifier != b.system_id || major != b.pg_version.to_string() {
        return refuse(format!(
            "is the data directory of another cluster (system {}, PostgreSQL {major})",
            control.system_identifier
        ));
    }
    Ok(Found::SameCluster)
}

/// Classifies a tablespace's destination (`target` described as `what`), given what the data
/// directory's destination `pg_dest` holds.
fn classify_tablespace(
    manifest: &Manifest,
    what: &str,
    target: &str,
    dest: &Path,
    pg_dest: &Path,
    pg_found: Found,
    opts: &RestoreOptions,
) -> Result<Found> {
    if let Some(found) = absent_or_empty(target, dest)? {
        return Ok(found);
    }
    refuse_without_delta(dest, opts)?;
    if let Some(found) = interrupted(manifest, dest)? {
        return Ok(found);
    }
    let link = pg_dest.join(target);
    let linked_here = pg_found == Found::SameCluster
        && fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink())
        && fs::canonicalize(&link).ok() == fs::canonicalize(dest).ok();
    if !linked_here {
        return Err(Error::RestoreTarget(format!(
            "restore destination {} of {what} is not empty, and it is not this tablespace's directory in a data directory of the backup's cluster at {} ({} does not lead there): restore the tablespace elsewhere with --tablespace-map={}=<new directory>, or empty it",
            dest.display(),
            pg_dest.display(),
            link.display(),
            target.trim_start_matches("pg_tblspc/")
        )));
    }
    let entries = fs::read_dir(dest).map_err(|e| Error::io("unable to list", dest, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("unable to list", dest, e))?;
        let name = entry.file_name();
        let is_version_dir = entry.file_type().is_ok_and(|t| t.is_dir())
            && name.to_str().is_some_and(|n| n.starts_with("PG_"));
        if !is_version_dir {
            return Err(Error::RestoreTarget(format!(
                "restore destination {} of {what} holds {}, which is not a PostgreSQL tablespace version directory (PG_<version>_<catalog>): move it away, or restore the tablespace elsewhere with --tablespace-map",
                dest.display(),
                entry.path().display()
            )));
        }
    }
    Ok(Found::SameCluster)
}

/// `Some(Interrupted)` when `dest` holds the marker of an interrupted restore of the backup's
/// cluster; refuses one of another cluster.
fn interrupted(manifest: &Manifest, dest: &Path) -> Result<Option<Found>> {
    let path = dest.join(MARKER);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to read", &path, e)),
    };
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let b = &manifest.backup;
    let system = value("system-id").and_then(|v| v.parse::<u64>().ok());
    if system != Some(b.system_id) || value("pg-version") != Some(&b.pg_version.to_string()) {
        return Err(Error::RestoreTarget(format!(
            "restore destination {} holds {MARKER} of an interrupted restore of another cluster (system {}, PostgreSQL {}); backup {} is of system {}, PostgreSQL {}. Restore into an empty or new directory",
            dest.display(),
            value("system-id").unwrap_or("?"),
            value("pg-version").unwrap_or("?"),
            b.label,
            b.system_id,
            b.pg_version
        )));
    }
    Ok(Some(Found::Interrupted))
}

/// The marker's text for a restore of `manifest`'s backup.
pub(super) fn marker_text(manifest: &Manifest) -> String {
    let b = &manifest.backup;
    format!(
        "# pgbr is restoring backup {} here; if it was interrupted, run the restore again with --delta\nsystem-id={}\npg-version={}\nbackup={}\n",
        b.label, b.system_id, b.pg_version, b.label
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(system_id: u64) -> Manifest {
        let mut m = Manifest::default();
        m.backup.label = "20261207-120000F".into();
        m.backup.system_id = system_id;
        m.backup.pg_version = 15;
        m.links.push(pgbr_manifest::LinkEntry {
            target: "pg_data".into(),
            name: "pg_wal".into(),
            destination: "/srv/wal/main".into(),
        });
        m
    }

    #[test]
    fn an_interrupted_restore_is_taken_up_only_for_its_own_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(interrupted(&manifest(7), dir.path()).expect("none"), None);
        fs::write(dir.path().join(MARKER), marker_text(&manifest(7))).expect("write");
        assert_eq!(
            interrupted(&manifest(7), dir.path()).expect("same cluster"),
            Some(Found::Interrupted)
        );
        let err = interrupted(&manifest(8), dir.path()).expect_err("another cluster");
        assert!(
            matches!(&err, Error::RestoreTarget(m) if m.contains("another cluster (system 7")),
            "{err}"
        );
    }

    #[test]
    fn a_link_of_the_backup_into_a_running_servers_directory_is_refused() {
        let live = |linked: &str| LiveCluster {
            pid: 4242,
            data_dir: PathBuf::from("/var/lib/postgresql/15/main"),
            linked: vec![PathBuf::from(linked)],
        };
        let dests = BTreeMap::from([("pg_data".to_string(), PathBuf::from("/restore/here"))]);
        let err = refuse_links_into_live(&manifest(7), &dests, &[live("/srv/wal/main")])
            .expect_err("the live cluster's pg_wal");
        assert!(
            matches!(&err, Error::RestoreTarget(m) if m.contains("pg_data/pg_wal") && m.contains("pid 4242")),
            "{err}"
        );
        refuse_links_into_live(&manifest(7), &dests, &[live("/srv/wal/other")]).expect("elsewhere");
        // A relative link, from the directory it is restored in.
        let mut relative = manifest(7);
        relative.links[0].destination = "../../srv/wal/main".into();
        let dests = BTreeMap::from([("pg_data".to_string(), PathBuf::from("/restore/here"))]);
        let err = refuse_links_into_live(&relative, &dests, &[live("/srv/wal/main")])
            .expect_err("relative");
        assert!(
            matches!(&err, Error::RestoreTarget(m) if m.contains("pid 4242")),
            "{err}"
        );
    }
}
