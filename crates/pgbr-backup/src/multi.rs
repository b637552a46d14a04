//! Several repositories (`repo1`..`repo4`): `archive-push` to every one, `archive-get` and the
//! choice of the repository to restore from, falling back from one repository to the next.
//!
//! The single-repository commands (`backup`, `restore`, `expire`, `verify`) take one
//! [`Repository`]; these functions decide which one, or repeat an operation over all of them
//! (`info` too, and the stanza commands, which run in every repository).

use std::path::Path;

use crate::archive::{self, GetOutcome, PushOutcome};
use crate::archive_async::{self, AsyncOptions};
use crate::config::{ArchivePushOptions, CloudOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::info::{self, StanzaReport};
use crate::repo::Repository;

/// `repo2 (s3:bucket)`: a repository for messages, built from its options alone (so it can name a
/// repository whose storage could not even be opened). Never carries a credential.
pub fn label(opts: &RepoOptions) -> String {
    let place = match &opts.cloud {
        None => format!("posix:{}", opts.path),
        Some(CloudOptions::S3(o)) => format!("s3:{}", o.bucket),
        Some(CloudOptions::Azure(o)) => format!("azure:{}/{}", o.account, o.container),
        Some(CloudOptions::Gcs(o)) => format!("gcs:{}", o.bucket),
    };
    format!("{} ({place})", opts.name())
}

/// What `archive-push` did in each repository.
#[derive(Debug, Default)]
pub struct PushAllReport {
    /// Repositories that hold the file now: (repository, what the push did).
    pub stored: Vec<(String, PushOutcome)>,
    /// Repositories that could not take it: (repository, why).
    pub failed: Vec<(String, Error)>,
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
    let results = futures::future::join_all(repos.iter().map(|r| async move {
        let repo = Repository::open(r, stanza).await?;
        archive::push(&repo, wal_path, opts).await
    }))
    .await;
    let mut report = PushAllReport::default();
    for (r, result) in repos.iter().zip(results) {
        match result {
            Ok(outcome) => report.stored.push((label(r), outcome)),
            Err(e) => report.failed.push((label(r), e)),
        }
    }
    report
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
        match archive_async::take_prefetched(stanza, wal_name, dest, s).await {
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

/// The repository to restore from: with one repository, that one; with several, the first that
/// opens and holds a backup (backup `set` when given). Returns it and the repositories passed
/// over, with why.
pub async fn open_for_restore(
    repos: &[RepoOptions],
    stanza: &str,
    set: Option<&str>,
) -> Result<(Repository, Vec<(String, Error)>)> {
    if let [only] = repos {
        return Ok((Repository::open(only, stanza).await?, Vec::new()));
    }
    let mut skipped = Vec::new();
    for r in repos {
        match Repository::open(r, stanza).await {
            Ok(repo) => {
                let backups = &repo.backup_info().backups;
                let has = match set {
                    Some(s) => backups.iter().any(|b| b.label == s),
                    None => !backups.is_empty(),
                };
                if has {
                    return Ok((repo, skipped));
                }
                let what = match set {
                    Some(s) => format!("has no backup {s}"),
                    None => "has no backup".to_string(),
                };
                skipped.push((label(r), Error::BackupMissing(what)));
            }
            Err(e) => skipped.push((label(r), e)),
        }
    }
    let why: Vec<String> = skipped.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    Err(Error::BackupMissing(format!(
        "no repository holds a backup to restore for stanza '{stanza}': {}",
        why.join("; ")
    )))
}

/// Opens every repository of `repos`: those that open, and for each one that does not, a line
/// naming it and why.
pub async fn open_all(repos: &[RepoOptions], stanza: &str) -> (Vec<Repository>, Vec<String>) {
    let mut opened = Vec::new();
    let mut unavailable = Vec::new();
    for r in repos {
        match Repository::open(r, stanza).await {
            Ok(repo) => opened.push(repo),
            Err(e) => unavailable.push(format!("{}: {e}", label(r))),
        }
    }
    (opened, unavailable)
}

/// The first repository of `repos` that opens; when none does, the first one's error.
pub async fn open_first(repos: &[RepoOptions], stanza: &str) -> Result<Repository> {
    let mut first_error = None;
    for r in repos {
        match Repository::open(r, stanza).await {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Error::Config("no repository is configured".into())))
}

/// `info` of every repository of `repos`: one report per stanza (every stanza, or `stanza`) and
/// repository, in the order of `repos`. With several repositories, one that fails is reported as
/// an entry with status `error` and its message, so the others are still shown; it is an error
/// only when every repository fails.
pub async fn info_all(repos: &[RepoOptions], stanza: Option<&str>) -> Result<Vec<StanzaReport>> {
    if let [only] = repos {
        return info::collect(only, stanza).await;
    }
    let mut out = Vec::new();
    let mut first_error = None;
    let mut any_ok = false;
    for r in repos {
        match info::collect(r, stanza).await {
            Ok(reports) => {
                any_ok = true;
                out.extend(reports);
            }
            Err(e) => {
                out.push(StanzaReport {
                    name: stanza.unwrap_or_default().to_string(),
                    repo: label(r),
                    status: "error".into(),
                    message: Some(e.to_string()),
                    cipher: r.cipher_type.to_string(),
                    db: Vec::new(),
                    archive: Vec::new(),
                    backups: Vec::new(),
                    page_errors: Vec::new(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !any_ok => Err(e),
        _ => Ok(out),
    }
}
