//! Listing what the backup copies: the data directory and each tablespace linked from
//! `pg_tblspc/`, without what PostgreSQL rebuilds or never needs (see [`crate::exclude`]).
//! Each file goes to the [`Planner`] as the walk finds it: no list of every file is held beside
//! the prior manifest, which for a cluster of many files would be a fifth of an incremental's
//! memory.

use std::path::Path;
use std::sync::Arc;

use pgbr_manifest::{LinkEntry, PathEntry, Target};
use pgbr_storage::posix::{self, Entry, EntryKind};
use pgbr_wal::Lsn;

use super::planner::{Job, Planner};
use crate::error::{Error, Result};
use crate::exclude;
use crate::pg::Tablespace;
use crate::pipeline::PageCheckSpec;

/// What the manifest records besides files.
pub(super) struct Listing {
    /// The data directory, then the tablespaces.
    pub targets: Vec<Target>,
    pub paths: Vec<PathEntry>,
    pub links: Vec<LinkEntry>,
}

/// Walks the data directory at `source` (whose manifest name is `pg_path`'s) and its
/// tablespaces, handing every file to `planner`. `checksums`: the cluster has page checksums,
/// checked in relation files against the backup's start LSN `start`.
pub(super) fn walk_cluster(
    pg_path: &Path,
    source: &Path,
    tablespaces: &[Tablespace],
    checksums: bool,
    start: Lsn,
    planner: &mut Planner,
) -> Result<Listing> {
    let mut targets = vec![Target {
        name: "pg_data".into(),
        path: pg_path.display().to_string(),
        tablespace_oid: None,
        tablespace_name: None,
    }];
    let mut collector = Collector {
        checksums,
        start,
        paths: Vec::new(),
        links: Vec::new(),
        planner,
    };
    let pg_root: Arc<Path> = Arc::from(source);
    let pg_data: Arc<str> = Arc::from("pg_data");
    for e in walk(source, true)? {
        if let Some(oid) = e.rel_path.strip_prefix("pg_tblspc/") {
            if let EntryKind::Symlink { target } = &e.kind {
                let oid_num: u32 = oid.parse().map_err(|_| {
                    Error::Corrupt(format!(
                        "{}: unexpected entry pg_tblspc/{oid}",
                        pg_path.display()
                    ))
                })?;
                let ts = tablespaces.iter().find(|t| t.oid == oid_num);
                let name = format!("pg_tblspc/{oid}");
                targets.push(Target {
                    name: name.clone(),
                    path: target.display().to_string(),
                    tablespace_oid: Some(oid_num),
                    tablespace_name: ts.map(|t| t.name.clone()),
                });
                let (name, root) = (Arc::from(name.as_str()), Arc::from(target.as_path()));
                for e in walk(target, false)? {
                    collector.add(&name, &root, e);
                }
                continue;
            }
        }
        collector.add(&pg_data, &pg_root, e);
    }
    let mut paths = collector.paths;
    paths.push(PathEntry {
        target: "pg_data".into(),
        name: String::new(),
        mode: mode_of(source)?,
    });
    for t in targets.iter().skip(1) {
        paths.push(PathEntry {
            target: t.name.clone(),
            name: String::new(),
            mode: mode_of(Path::new(&t.path))?,
        });
    }
    Ok(Listing {
        targets,
        paths,
        links: collector.links,
    })
}

fn mode_of(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|e| Error::io("unable to stat", path, e))
}

fn walk(root: &Path, is_pg_data: bool) -> Result<Vec<Entry>> {
    let entries = if is_pg_data {
        posix::walk(root, &|rel: &str, kind: &EntryKind| {
            exclude::skip_in_pg_data(rel, kind)
        })?
    } else {
        posix::walk(root, &|rel: &str, _: &EntryKind| {
            exclude::skip_anywhere(rel)
        })?
    };
    Ok(exclude::drop_unlogged(entries))
}

/// Sorts the walk's entries: directories and links to the listing, files to the planner.
struct Collector<'p, 'a> {
    checksums: bool,
    start: Lsn,
    paths: Vec<PathEntry>,
    links: Vec<LinkEntry>,
    planner: &'p mut Planner<'a>,
}

impl Collector<'_, '_> {
    fn add(&mut self, target: &Arc<str>, root: &Arc<Path>, e: Entry) {
        match e.kind {
            EntryKind::Dir => self.paths.push(PathEntry {
                target: target.to_string(),
                name: e.rel_path,
                mode: e.mode,
            }),
            EntryKind::Symlink { target: dest } => self.links.push(LinkEntry {
                target: target.to_string(),
                name: e.rel_path,
                destination: dest.display().to_string(),
            }),
            EntryKind::File { size } => {
                let pages = (self.checksums
                    && exclude::is_checksummed_relation(&**target == "pg_data", &e.rel_path))
                .then(|| {
                    let name = e.rel_path.rsplit('/').next().unwrap_or_default();
                    let segment = exclude::relation_parts(name)
                        .and_then(|(_, _, s)| s.parse().ok())
                        .unwrap_or(0);
                    PageCheckSpec {
                        segment,
                        start_lsn: self.start.0,
                    }
                });
                self.planner.add(Job {
                    target: Arc::clone(target),
                    root: Arc::clone(root),
                    name: e.rel_path.into(),
                    size,
                    mtime: e.mtime,
                    mode: e.mode,
                    pages,
                    prior: None,
                    changes: None,
                })
            }
        }
    }
}
