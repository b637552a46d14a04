//! Several repositories (`repo1`..`repo256`): the choice of the repository to restore from (or to
//! read the archive from), falling back from one repository to the next, and `info` over all of
//! them. `archive-push` to every one and `archive-get` from the first that has the file are in
//! [`crate::archive`].
//!
//! The single-repository commands (`backup`, `restore`, `expire`, `verify`) take one
//! [`Repository`]; these functions decide which one, or repeat an operation over all of them
//! (`info` too, and the stanza commands, which run in every repository).

use crate::config::{CloudOptions, Config, ExpireOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::info::{self, StanzaReport};
use crate::recovery::RecoveryTarget;
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

/// The repository to restore from: with one repository, that one; with several, the first that
/// opens and holds a backup (backup `set` when given) — except that without `set`, when
/// pgBackRest wrote one of the candidates (a stanza taken over from pgBackRest), the one whose
/// newest backup that can reach `target` is the newest, so the old repository does not win by
/// its place in the configuration. Returns it and the repositories passed over, with why.
pub async fn open_for_restore(
    repos: &[RepoOptions],
    stanza: &str,
    set: Option<&str>,
    target: &RecoveryTarget,
) -> Result<(Repository, Vec<(String, Error)>)> {
    if let [only] = repos {
        return Ok((Repository::open(only, stanza).await?, Vec::new()));
    }
    let mut skipped = Vec::new();
    let mut candidates = Vec::new();
    for r in repos {
        match Repository::open(r, stanza).await {
            Ok(repo) => {
                let backups = &repo.backup_info().backups;
                let has = match set {
                    Some(s) => backups.iter().any(|b| b.label == s),
                    None => !backups.is_empty(),
                };
                if has {
                    candidates.push(repo);
                    if set.is_some() {
                        break;
                    }
                    continue;
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
    let mixed = candidates.iter().any(Repository::is_backrest);
    let chosen = if mixed {
        let usable = crate::restore::usable_for(target);
        let newest = |repo: &Repository| {
            let backups = &repo.backup_info().backups;
            backups
                .iter()
                .filter(|b| usable(b))
                .map(|b| b.timestamp_stop)
                .max()
        };
        // The first of those whose newest usable backup is the newest.
        let best = candidates.iter().map(newest).max().flatten();
        candidates
            .iter()
            .position(|r| best.is_some() && newest(r) == best)
            .unwrap_or(0)
    } else {
        0
    };
    if chosen < candidates.len() {
        let repo = candidates.swap_remove(chosen);
        for other in candidates.into_iter().filter(|_| mixed) {
            skipped.push((
                other.name(),
                Error::BackupMissing(format!("{} holds a newer backup", repo.name())),
            ));
        }
        return Ok((repo, skipped));
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
                    repo_key: r.index,
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

/// The `expire` options of `config` for `repo`, with the WAL that a repository pgBackRest wrote
/// (configured beside `repo`, for the same stanza) needs kept: from its newest backup's start
/// on, since the WAL archived after pgbr took the stanza over is only in pgbr's repositories,
/// and without it that backup recovers no further than the takeover.
pub async fn expire_options(config: &Config, repo: &Repository) -> Result<ExpireOptions> {
    let mut opts = config.expire()?;
    let mut starts = Vec::new();
    for other in config.repos_besides(repo.opts.index)? {
        match Repository::open(&other, repo.stanza()).await {
            Ok(r) if r.is_backrest() => starts.extend(
                r.backup_info()
                    .backups
                    .iter()
                    .max_by_key(|b| b.timestamp_start)
                    .map(|b| b.wal_start.clone()),
            ),
            Ok(_) => {}
            Err(e) => {
                // pgBackRest's but unreadable (its passphrase, say), or its storage unreachable so
                // that nobody can tell: which WAL its backups need is unknown, so none is expired.
                let storage = crate::repo::open_storage(&other);
                let backrest = match storage {
                    Ok(storage) => crate::repo::is_backrest_stanza(&storage, repo.stanza()).await,
                    Err(e) => Err(e),
                };
                let why = match backrest {
                    Ok(false) => continue,
                    Ok(true) => format!("{e}; it is pgBackRest's"),
                    Err(unknown) => {
                        format!("{e}; whether it is pgBackRest's is unknown ({unknown})")
                    }
                };
                tracing::warn!(
                    "{}: {why}, and the WAL its backups need may be only in {}: no WAL is expired",
                    label(&other),
                    repo.name()
                );
                starts.push(FIRST_SEGMENT.to_string());
            }
        }
    }
    opts.keep_wal_from = starts
        .into_iter()
        .filter(|start| !start.is_empty())
        .min_by(|a, b| a.get(8..).cmp(&b.get(8..)));
    Ok(opts)
}

/// The lowest WAL position there is (timeline aside): keeping WAL from here keeps all of it.
const FIRST_SEGMENT: &str = "000000010000000000000000";
