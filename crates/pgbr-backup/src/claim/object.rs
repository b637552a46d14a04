//! The claim object itself: its key, what it holds, taking it (over), renewing and releasing
//! it. It needs only the repository's storage, so the repository handle can hold one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pgbr_storage::Storage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;

/// How often a holder renews its claim.
pub const RENEW_EVERY: Duration = Duration::from_secs(60);
/// How long a claim of another host may go without renewal before it is taken for stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// Attempts at taking a claim that keeps changing under us.
const ATTEMPTS: usize = 5;

/// What a claim object holds (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    /// The command holding the stanza (`backup`, `expire`, `stanza-create`, ...).
    command: String,
    /// The backup's label, once chosen.
    #[serde(default)]
    label: Option<String>,
    host: String,
    /// `/proc/sys/kernel/random/boot_id`: a rebooted host is another host.
    boot_id: String,
    /// The pid namespace (`/proc/self/ns/pid`): a container sharing the host name is another host.
    pid_ns: String,
    pid: u32,
    /// When the process started (clock ticks since boot), which tells a reused pid.
    pid_start: u64,
    /// Unix seconds.
    started: i64,
    /// Unix seconds of the last renewal.
    renewed: i64,
    /// Unique to this claim.
    token: String,
}

impl Holder {
    fn of_this_process(command: &str) -> Holder {
        let pid = std::process::id();
        let now = now();
        let host = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into());
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(now);
        Holder {
            command: command.to_string(),
            label: None,
            token: format!("{host}:{pid}:{nanos}"),
            host,
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            pid_ns: pid_namespace(),
            pid,
            pid_start: process_start(pid).unwrap_or(0),
            started: now,
            renewed: now,
        }
    }

    fn to_bytes(&self) -> Result<Bytes> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(format!("serializing the repository claim: {e}")))
    }

    fn same_host(&self, me: &Holder) -> bool {
        self.host == me.host && self.boot_id == me.boot_id && self.pid_ns == me.pid_ns
    }

    /// `None` while the holder may be alive; why it is stale otherwise.
    fn stale(&self, me: &Holder) -> Option<String> {
        if self.same_host(me) {
            // SAFETY: kill(2) with signal 0 only checks that the process exists.
            let gone = unsafe { libc::kill(self.pid as libc::pid_t, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                return Some(format!(
                    "its process (pid {}) is no longer running on this host",
                    self.pid
                ));
            }
            return match process_start(self.pid) {
                Some(start) if start != self.pid_start => Some(format!(
                    "pid {} is now another process on this host",
                    self.pid
                )),
                _ => None,
            };
        }
        let age = now() - self.renewed;
        (age > STALE_AFTER.as_secs() as i64).then(|| {
            format!(
                "it was last renewed {} ago, more than {} (holders renew every {} s)",
                ago(age),
                ago(STALE_AFTER.as_secs() as i64),
                RENEW_EVERY.as_secs()
            )
        })
    }

    /// `backup 20261201-101010F, pid 1234 on host db1, since 2026-12-01 10:10:10 UTC, renewed
    /// 5s ago`.
    fn describe(&self) -> String {
        let label = self
            .label
            .as_deref()
            .map(|l| format!(" {l}"))
            .unwrap_or_default();
        format!(
            "{}{label}, pid {} on host {}, since {}, renewed {} ago",
            self.command,
            self.pid,
            self.host,
            utc(self.started),
            ago(now() - self.renewed)
        )
    }
}

/// A claim this process holds; renewed in the background until released (or dropped).
#[derive(Debug)]
pub struct Claim {
    storage: Storage,
    key: String,
    /// The repository, as messages name it.
    repo: String,
    holder: Arc<Mutex<Holder>>,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// Claims `stanza` in `storage` (named `repo` in messages) for `command`, taking over a stale
    /// claim (with a warning), or fails with [`Error::Locked`] naming the live one.
    pub(crate) async fn take(
        storage: &Storage,
        repo: &str,
        stanza: &str,
        command: &str,
    ) -> Result<Claim> {
        let key = layout::claim(stanza);
        let me = Holder::of_this_process(command);
        let body = me.to_bytes()?;
        for _ in 0..ATTEMPTS {
            if storage.put_if_absent(&key, body.clone()).await? {
                return Ok(Claim::held(storage, repo, key, me));
            }
            let Some(found) = storage.get_opt(&key).await? else {
                continue;
            };
            let Ok(other) = serde_json::from_slice::<Holder>(&found) else {
                return Err(Error::Locked(format!(
                    "stanza '{stanza}' is claimed in {repo} by an unreadable claim {key}: if no pgbr command runs on this stanza on any host, remove that object and run the command again"
                )));
            };
            if other.token == me.token {
                // A create whose first try landed though its answer was lost, then retried.
                return Ok(Claim::held(storage, repo, key, me));
            }
            let Some(why) = other.stale(&me) else {
                return Err(Error::Locked(format!(
                    "stanza '{stanza}' is claimed in {repo} by another pgbr command ({key}: {}); wait for it to finish (a claim whose holder is gone is taken over: at once on its own host, after {} without renewal from another)",
                    other.describe(),
                    ago(STALE_AFTER.as_secs() as i64)
                )));
            };
            take_over(storage, repo, stanza, &key, (&found, &other), &me, &why).await?;
        }
        Err(Error::Locked(format!(
            "the claim {key} of stanza '{stanza}' in {repo} kept changing while this command tried to take it: another pgbr command is starting; run this one again"
        )))
    }

    fn held(storage: &Storage, repo: &str, key: String, me: Holder) -> Claim {
        let holder = Arc::new(Mutex::new(me));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (storage, key, holder, lost) = (
                storage.clone(),
                key.clone(),
                Arc::clone(&holder),
                Arc::clone(&lost),
            );
            let repo = repo.to_string();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    match rewrite(&storage, &key, &holder).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            tracing::error!("{repo}: the claim {key} is no longer this process's: another command took it over");
                            return;
                        }
                        Err(e) => tracing::warn!("{repo}: unable to renew the claim {key}: {e}"),
                    }
                }
            })
        };
        Claim {
            storage: storage.clone(),
            key,
            repo: repo.to_string(),
            holder,
            lost,
            renewer,
        }
    }

    /// Records the backup's label in the claim, so that a command refused names it.
    pub(crate) async fn set_label(&self, label: &str) -> Result<()> {
        if let Ok(mut h) = self.holder.lock() {
            h.label = Some(label.to_string());
        }
        self.check_rewrite().await
    }

    /// Fails with [`Error::Locked`] unless the claim is still this process's (renewing it).
    pub(crate) async fn check(&self) -> Result<()> {
        self.check_rewrite().await
    }

    async fn check_rewrite(&self) -> Result<()> {
        if !self.lost.load(Ordering::SeqCst)
            && rewrite(&self.storage, &self.key, &self.holder).await?
        {
            return Ok(());
        }
        self.lost.store(true, Ordering::SeqCst);
        Err(Error::Locked(format!(
            "{}: this command's claim {} was taken over by another pgbr command (this one could not renew it for {}); nothing more is written",
            self.repo,
            self.key,
            ago(STALE_AFTER.as_secs() as i64)
        )))
    }

    /// Removes the claim, if it is still this process's.
    pub(crate) async fn release(&self) -> Result<()> {
        self.renewer.abort();
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        let token = self.token();
        if let Some(found) = self.storage.get_opt(&self.key).await? {
            if token_of(&found).as_deref() == Some(token.as_str()) {
                self.storage.delete(&self.key).await?;
            }
        }
        Ok(())
    }

    /// [`Claim::release`]; a claim that cannot be removed is left for the next command to take
    /// over, with a warning.
    pub(crate) async fn release_or_warn(&self) {
        if let Err(e) = self.release().await {
            tracing::warn!(
                "{}: unable to remove the claim {}: {e}; the next command takes it over",
                self.repo,
                self.key
            );
        }
    }

    fn token(&self) -> String {
        self.holder
            .lock()
            .map(|h| h.token.clone())
            .unwrap_or_default()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Deletes the stale claim `found` (held by `other`) unless another command is taking it over
/// or it changed meanwhile; the caller then tries to create its own again.
async fn take_over(
    storage: &Storage,
    repo: &str,
    stanza: &str,
    key: &str,
    (found, other): (&Bytes, &Holder),
    me: &Holder,
    why: &str,
) -> Result<()> {
    let marker =
        layout::claim_takeover(stanza, &blake3::hash(other.token.as_bytes()).to_hex()[..16]);
    if !storage.put_if_absent(&marker, me.to_bytes()?).await? {
        let taker = storage.get_opt(&marker).await?;
        match taker.and_then(|t| serde_json::from_slice::<Holder>(&t).ok()) {
            // A taker that died mid-way: its marker goes, the next attempt takes over.
            Some(t) if t.stale(me).is_none() => {
                return Err(Error::Locked(format!(
                    "stanza '{stanza}' in {repo}: the stale claim {key} is being taken over by another pgbr command ({}); wait for it to finish",
                    t.describe()
                )))
            }
            _ => storage.delete(&marker).await?,
        }
        return Ok(());
    }
    // Under the marker, nobody else deletes the claim: it is deleted only if it is still the one
    // judged stale.
    let still = storage.get_opt(key).await?;
    if still.as_ref() == Some(found) {
        storage.delete(key).await?;
        tracing::warn!(
            "{repo}: took over the stale claim {key} of stanza '{stanza}' ({}): {why}",
            other.describe()
        );
    }
    storage.delete(&marker).await?;
    Ok(())
}

/// Renews the claim at `key` if it still holds `holder`'s token; `false` if it does not.
async fn rewrite(storage: &Storage, key: &str, holder: &Mutex<Holder>) -> Result<bool> {
    let (token, body) = {
        let mut h = holder
            .lock()
            .map_err(|_| Error::Internal("repository claim poisoned".into()))?;
        h.renewed = now();
        (h.token.clone(), h.to_bytes()?)
    };
    match storage.get_opt(key).await? {
        Some(found) if token_of(&found).as_deref() == Some(token.as_str()) => {
            storage.put(key, body).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn token_of(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Holder>(bytes)
        .ok()
        .map(|h| h.token)
}

/// Whether `name` (a key's last segment in `backup/<stanza>/`) is the claim or a takeover marker.
pub(crate) fn is_claim_name(name: &str) -> bool {
    let base = layout::CLAIM_FILE;
    name == base
        || name
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `42s`, `12m05s`, `3h02m`.
fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_of_a_gone_process_on_this_host_is_stale_and_of_a_live_one_is_not() {
        let me = Holder::of_this_process("backup");
        assert_eq!(me.stale(&me), None, "this very process is alive");
        assert!(
            me.pid_start > 0,
            "the start time of this process is readable"
        );
        let reused = Holder {
            pid_start: me.pid_start + 1,
            ..me.clone()
        };
        assert!(reused
            .stale(&me)
            .expect("reused pid")
            .contains("another process"));
        let gone = Holder {
            pid: 0x3fff_fff0,
            ..me.clone()
        };
        assert!(gone.stale(&me).expect("gone").contains("no longer running"));
    }

    #[test]
    fn a_claim_of_another_host_is_stale_only_once_not_renewed_for_the_limit() {
        let me = Holder::of_this_process("backup");
        let limit = STALE_AFTER.as_secs() as i64;
        let other = Holder {
            host: "elsewhere".into(),
            pid: 0x3fff_fff0,
            renewed: now() - limit + 60,
            ..me.clone()
        };
        assert_eq!(
            other.stale(&me),
            None,
            "a dead pid elsewhere proves nothing"
        );
        let old = Holder {
            renewed: now() - limit - 60,
            ..other.clone()
        };
        assert!(old.stale(&me).expect("stale").contains("31m00s ago"));
        let rebooted = Holder {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert!(rebooted.stale(&me).is_none(), "judged by time, not by pid");
    }

    #[tokio::test]
    async fn a_second_claim_is_refused_naming_the_holder_and_a_released_one_is_free() {
        let storage = Storage::memory();
        let first = Claim::take(&storage, "repo1 (memory)", "main", "backup")
            .await
            .expect("first");
        first.set_label("20261201-101010F").await.expect("label");
        let e = Claim::take(&storage, "repo1 (memory)", "main", "expire")
            .await
            .expect_err("second");
        assert_eq!(e.exit_code(), 13);
        let msg = e.to_string();
        for needle in [
            "backup/main/backup.lock",
            "repo1 (memory)",
            "backup 20261201-101010F",
            &format!("pid {}", std::process::id()),
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        // Another stanza is free.
        let other = Claim::take(&storage, "repo1 (memory)", "other", "backup")
            .await
            .expect("other stanza");
        first.check().await.expect("still held");
        first.release().await.expect("release");
        assert!(!storage
            .exists("backup/main/backup.lock")
            .await
            .expect("head"));
        let again = Claim::take(&storage, "repo1 (memory)", "main", "expire")
            .await
            .expect("after release");
        again.release().await.expect("release");
        other.release().await.expect("release");
    }

    #[tokio::test]
    async fn a_stale_claim_is_taken_over_and_its_old_holder_finds_it_lost() {
        let storage = Storage::memory();
        let old = Claim::take(&storage, "repo1", "main", "backup")
            .await
            .expect("old");
        // As if its process were gone: rewrite the claim with a pid that does not exist.
        let dead = Holder {
            pid: 0x3fff_fff0,
            ..old.holder.lock().expect("holder").clone()
        };
        storage
            .put("backup/main/backup.lock", dead.to_bytes().expect("json"))
            .await
            .expect("put");
        let new = Claim::take(&storage, "repo1", "main", "backup")
            .await
            .expect("takeover");
        let e = old.check().await.expect_err("lost");
        assert_eq!(e.exit_code(), 13);
        // The old holder's release leaves the new claim alone.
        old.release().await.expect("release");
        new.check().await.expect("new still holds it");
        let (_, objects) = storage.list_dir("backup/main").await.expect("list");
        let names: Vec<_> = objects.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            names,
            ["backup/main/backup.lock"],
            "no takeover marker is left"
        );
        new.release().await.expect("release");
    }

    #[test]
    fn claim_names_are_told_from_labels() {
        assert!(is_claim_name("backup.lock"));
        assert!(is_claim_name("backup.lock.0123456789abcdef"));
        assert!(!is_claim_name("backup.info"));
        assert!(!is_claim_name("backup.lockx"));
    }
}
