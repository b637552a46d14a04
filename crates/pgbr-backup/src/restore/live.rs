//! The PostgreSQL servers running on this host, and the directories each one uses: a restore
//! never writes where a running server works.
//!
//! A postmaster runs in its data directory (it changes into it at start) and names itself in
//! the first line of `postmaster.pid` there. So a process whose working directory holds a
//! `postmaster.pid` naming that process is a running server, and that directory is its data
//! directory; its backends share the directory but are not named there. Processes this user
//! may not inspect (another user's, when not run as root) are not seen: `postmaster.pid` in
//! the destination is checked besides.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// A PostgreSQL server running on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LiveCluster {
    /// The postmaster's process id.
    pub pid: u32,
    /// Its data directory, resolved.
    pub data_dir: PathBuf,
    /// Directories outside the data directory it writes to, resolved: its tablespaces (the
    /// targets of `pg_tblspc/*`) and the targets of links at the top of the data directory
    /// (`pg_wal` made with `initdb --waldir`).
    pub linked: Vec<PathBuf>,
}

impl LiveCluster {
    /// The directory of this server that `path` (resolved) is, lies in or holds, if any.
    pub fn overlap(&self, path: &Path) -> Option<&Path> {
        std::iter::once(&self.data_dir)
            .chain(&self.linked)
            .find(|used| overlaps(used, path))
            .map(PathBuf::as_path)
    }
}

/// Whether one of two resolved paths is, or lies below, the other.
pub(super) fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The PostgreSQL servers running on this host that this process can see.
pub(super) fn running_clusters() -> Vec<LiveCluster> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(postmaster)
        .collect()
}

/// The server process `pid` is, if it is a postmaster.
fn postmaster(pid: u32) -> Option<LiveCluster> {
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let pid_file = fs::read_to_string(cwd.join("postmaster.pid")).ok()?;
    if pid_file.lines().next()?.trim().parse::<u32>().ok()? != pid {
        return None;
    }
    let data_dir = fs::canonicalize(&cwd).unwrap_or(cwd);
    let mut linked = links_below(&data_dir);
    linked.extend(links_below(&data_dir.join("pg_tblspc")));
    Some(LiveCluster {
        pid,
        data_dir,
        linked,
    })
}

/// Where the symbolic links directly in `dir` lead, resolved (links that lead nowhere are
/// left out).
fn links_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter_map(|e| fs::canonicalize(e.path()).ok())
        .collect()
}

/// Where the absolute `path` leads: each component that exists resolved (symbolic links
/// followed), `..` taken from what that gives, the rest as written.
pub(super) fn resolved(path: &Path) -> PathBuf {
    let mut at = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                at.push(name);
                if let Ok(real) = fs::canonicalize(&at) {
                    at = real;
                }
            }
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_in_a_directory_naming_it_in_postmaster_pid_is_a_running_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let tablespace = dir.path().join("ts");
        fs::create_dir_all(data.join("pg_tblspc")).expect("mkdir");
        fs::create_dir(&tablespace).expect("mkdir");
        std::os::unix::fs::symlink(&tablespace, data.join("pg_tblspc/16384")).expect("link");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&data)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        // Another process's pid in the file: not this one's directory.
        fs::write(
            data.join("postmaster.pid"),
            format!("{}\n{}\n", pid + 1, data.display()),
        )
        .expect("write");
        let found = running_clusters();
        assert!(found.iter().all(|c| c.pid != pid), "{found:?}");
        fs::write(
            data.join("postmaster.pid"),
            format!("{pid}\n{}\n", data.display()),
        )
        .expect("write");
        let found = running_clusters();
        let _ = child.kill();
        let _ = child.wait();
        let cluster = found
            .iter()
            .find(|c| c.pid == pid)
            .unwrap_or_else(|| panic!("pid {pid} not found in {found:?}"));
        let real = |p: &Path| fs::canonicalize(p).expect("canonicalize");
        assert_eq!(cluster.data_dir, real(&data));
        assert_eq!(cluster.linked, vec![real(&tablespace)]);
        // What overlaps: the directories themselves, below them, above them; not beside.
        assert!(cluster.overlap(&real(&data).join("base")).is_some());
        assert!(cluster.overlap(&real(&tablespace)).is_some());
        assert!(cluster.overlap(&real(dir.path())).is_some());
        assert!(cluster.overlap(&real(dir.path()).join("other")).is_none());
    }

    #[test]
    fn a_path_is_resolved_as_far_as_it_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = fs::canonicalize(dir.path()).expect("canonicalize");
        fs::create_dir(real.join("a")).expect("mkdir");
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).expect("link");
        assert_eq!(
            resolved(&real.join("link/new/deeper")),
            real.join("a/new/deeper")
        );
        assert_eq!(resolved(&real.join("link")), real.join("a"));
        assert_eq!(resolved(Path::new("/")), PathBuf::from("/"));
        // `..` after a link leaves where the link leads.
        assert_eq!(resolved(&real.join("link/../b/c")), real.join("b/c"));
        assert_eq!(resolved(Path::new("/x/y/../../z")), PathBuf::from("/z"));
    }
}
