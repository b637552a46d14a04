//! Archiving with several repositories (`repo1`..`repo256`): `archive-push` to every one,
//! `archive-get` from the first that holds the file.

use std::path::Path;

use super::spool::AsyncOptions;
use super::{GetOutcome, PushOutcome};
use crate::archive;
use crate::config::{ArchivePushOptions, RepoOptions};
use crate::error::Error;
use crate::multi::label;
use crate::repo::Repository;

/// What `archive-push` did in each repository.
#[derive(Debug, Default)]
pub struct PushAllReport {
    /// Repositories that hold the file now: (repository, what the push did).
    pub stored: Vec<(String, PushOutcome)>,
    /// Repositories that could not take it: (repository, why).
    pub failed: Vec<(String, Error)>,
    /// Repositories pgBackRest wrote, which pgbr reads but does not write (while another
    /// repository takes the file).
    pub skipped: Vec<String>,
}

/// Pushes the WAL file at `wal_path` to every repository in `repos`, concurrently.
///
/// A repository that already holds the same file answers [`PushOutcome::AlreadyArchived`] and is
/// not written again, so a retry after a partial failure only fills in the repositories that
/// missed it. The caller must fail (so PostgreSQL retries) when `failed` is not empty.
pub async fn push_all(
    repos: &[RepoOptions],
    stanza: &str,
    wal_path: &Path,
    opts: &ArchivePushOptions,
) -> PushAllReport {
    let opened = futures::future::join_all(repos.iter().map(|r| Repository::open(r, stanza))).await;
    let mut report = PushAllReport::default();
    let mut writable = Vec::new();
    for (r, o) in repos.iter().zip(opened) {
        match o {
            Ok(repo) => writable.push((label(r), repo)),
            Err(e) => report.failed.push((label(r), e)),
        }
    }
    let only_backrest = report.failed.is_empty() && writable.iter().all(|(_, r)| r.is_backrest());
    if !only_backrest {
        writable.retain(|(name, repo)| {
            if repo.is_backrest() {
                report.skipped.push(name.clone());
            }
            !repo.is_backrest()
        });
    }
    let results = futures::future::join_all(
        writable
            .iter()
            .map(|(_, repo)| archive::push(repo, wal_path, opts)),
    )
    .await;
    for ((name, _), result) in writable.into_iter().zip(results) {
        match result {
            Ok(outcome) => report.stored.push((name, outcome)),
            Err(e) => report.failed.push((name, e)),
        }
    }
    report
}

/// `repos` without those pgBackRest wrote (pgbr reads them, never writes them), unless that would
/// leave none: then each refuses the write itself, and says why.
pub(crate) fn writable(mut repos: Vec<Repository>) -> Vec<Repository> {
    if repos.iter().any(|r| !r.is_backrest()) {
        repos.retain(|r| !r.is_backrest());
    }
    repos
}

/// What [`get_first`] found.
#[derive(Debug, Default)]
pub struct GetFirstReport {
    /// The repository the file came from; `None` when no repository served it.
    pub found: Option<String>,
    /// Repositories that failed (unreachable, damaged copy, ...), with why. A repository without
    /// the stanza or without the file is not a failure.
    pub failed: Vec<(String, Error)>,
}

impl GetFirstReport {
    /// What `archive-get` answers: found; not found when every repository answered that it does
    /// not hold the file; otherwise the first failure (a repository that could not answer may
    /// hold it, and taking that for the end of the archive would end recovery too early).
    pub fn outcome(&self) -> std::result::Result<GetOutcome, &(String, Error)> {
        match (&self.found, self.failed.first()) {
            (Some(_), _) => Ok(GetOutcome::Found),
            (None, None) => Ok(GetOutcome::NotFound),
            (None, Some(f)) => Err(f),
        }
    }
}

/// `archive-get` over several repositories: the first repository that holds `wal_name` serves it
/// into `dest`; one that cannot be opened, fails or holds a copy that does not verify is passed
/// over for the next (with several repositories, so is one without the stanza).
pub async fn get_first(
    repos: &[RepoOptions],
    stanza: &str,
    wal_name: &str,
    dest: &Path,
    spool: Option<&AsyncOptions>,
) -> GetFirstReport {
    let mut report = GetFirstReport::default();
    // A prefetched segment is served before any repository is opened (and its key unwrapped).
    if let Some(s) = spool {
        match archive::take_prefetched(stanza, wal_name, dest, s).await {
            Ok(true) => {
                report.found = Some(format!("the spool ({})", s.spool_path.display()));
                return report;
            }
            Ok(false) => {}
            Err(e) => report.failed.push(("spool".to_string(), e)),
        }
    }
    for r in repos {
        let attempt = async {
            let repo = Repository::open(r, stanza).await?;
            archive::get(&repo, wal_name, dest).await
        };
        match attempt.await {
            Ok(GetOutcome::Found) => {
                report.found = Some(label(r));
                return report;
            }
            Ok(GetOutcome::NotFound) => {}
            // With several repositories, one without the stanza simply lacks the file.
            Err(Error::StanzaMissing { .. }) if repos.len() > 1 => {}
            Err(e) => report.failed.push((label(r), e)),
        }
    }
    report
}
