//! Copying the files: `process-max` workers take the [`Work`] largest first, while a task
//! records what is stored so far every few seconds in the in-progress manifest, so that an
//! interrupted backup can be resumed by the next one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgbr_manifest::{FileEntry, Manifest};

use super::commit::references_of;
use super::planner::Work;
use super::store::Storer;
use crate::config::BackupOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::pipeline::{self, Codec};
use crate::progress::Progress;
use crate::repo::Repository;

/// Shortest time between two records of an unfinished backup's progress.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(2);

/// How this backup encodes what it stores.
pub(super) fn codec(repo: &Repository, opts: &BackupOptions) -> Codec {
    Codec {
        workers: 0,
        compress_type: opts.compress.compress_type,
        level: opts.compress.level,
        cipher: repo.cipher(),
        key: repo.key().cloned(),
    }
}

/// What the workers produced.
pub(super) struct Copied {
    /// Entries of the files this backup stored (or kept from the attempt it resumes).
    pub stored: Vec<FileEntry>,
    /// Entries of files found unchanged by checksum (`--delta`): references to earlier backups.
    pub referenced: Vec<FileEntry>,
    /// Bytes read from the cluster's files.
    pub read: u64,
}

/// What this backup stored so far: the progress record's entries.
type Done = Arc<Mutex<Vec<FileEntry>>>;

/// Runs `work` on the workers into backup `label`, its progress recorded from `skeleton` (the
/// in-progress manifest without files).
pub(super) async fn copy(
    repo: &Repository,
    label: &str,
    opts: &BackupOptions,
    storer: Storer,
    skeleton: Manifest,
    work: Vec<Work>,
    progress: Arc<dyn Progress>,
) -> Result<Copied> {
    let done: Done = Arc::default();
    let (stop_snapshots, snapshots) = record_progress(repo, label, skeleton, Arc::clone(&done));
    let read = Arc::clone(&storer.read);
    let worker_done = Arc::clone(&done);
    let copied = pipeline::run_parallel(work, opts.process_max, move |w: Work| {
        crate::failpoints::crash_point!("backup::copy-file");
        let out = storer.busy.run(|| storer.store(w))?;
        for e in &out {
            progress.file_done(&e.name, e.size);
        }
        // What this backup stored goes to the progress record, which also hands it back at
        // the end: one copy of each entry, not two, which would be the peak memory of a backup
        // of many files. Entries of earlier backups are returned here: a resume cannot reuse
        // them.
        let (stored, referenced): (Vec<_>, Vec<_>) =
            out.into_iter().partition(|e| e.reference.is_none());
        let count = stored.len();
        match worker_done.lock() {
            Ok(mut d) => d.extend(stored),
            Err(_) => return Err(Error::Internal("backup progress record poisoned".into())),
        }
        Ok((count, referenced))
    })
    .await;
    // Stopped between two snapshots, so the lent entries are back in `done`.
    let _ = stop_snapshots.send(());
    let snapshots_ended = snapshots.await;
    // The progress record is now the only list of what this backup stored: a manifest is
    // written from it only when it holds every entry the workers handed it.
    let results = copied?;
    snapshots_ended
        .map_err(|e| Error::Internal(format!("the backup progress task failed: {e}")))?;
    let stored = match done.lock() {
        Ok(mut d) => std::mem::take(&mut *d),
        Err(_) => return Err(Error::Internal("backup progress record poisoned".into())),
    };
    let expected: usize = results.iter().map(|(count, _)| count).sum();
    if stored.len() != expected {
        return Err(Error::Internal(format!(
            "the entries of {} of the {expected} files stored were lost; the backup is not committed",
            expected.abs_diff(stored.len())
        )));
    }
    Ok(Copied {
        read: read.load(std::sync::atomic::Ordering::Relaxed),
        stored,
        referenced: results
            .into_iter()
            .flat_map(|(_, referenced)| referenced)
            .collect(),
    })
}

/// Where and how the workers store the files of backup `label`; `record_chain`: block maps keep
/// each block's chaining value.
pub(super) fn storer(
    repo: &Repository,
    label: &str,
    opts: &BackupOptions,
    codec: &Codec,
    record_chain: bool,
) -> Storer {
    // Codecs of the earlier backups whose blocks can be delta bases, from backup.info.
    let base_codecs: BTreeMap<String, Codec> = repo
        .compress_types()
        .into_iter()
        .map(|(label, compress_type)| {
            let codec = Codec {
                compress_type,
                ..codec.clone()
            };
            (label, codec)
        })
        .collect();
    Storer {
        storage: repo.storage().clone(),
        stanza_dir: layout::stanza_backup_dir(repo.stanza()),
        dir: repo.backup_path(label),
        ext: opts.compress.compress_type.extension(),
        codec: codec.clone(),
        delta: opts.delta,
        base_codecs,
        handle: tokio::runtime::Handle::current(),
        busy: pipeline::Busy::new(opts.process_max),
        record_chain,
        read: Arc::default(),
    }
}

/// Starts the task that saves `skeleton` with the entries in `done` as backup `label`'s
/// in-progress manifest every few seconds, until told to stop.
fn record_progress(
    repo: &Repository,
    label: &str,
    skeleton: Manifest,
    done: Done,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let repo = repo.task_handle();
    let label = label.to_string();
    // Failpoint: the snapshot loses the entries lent to it, as a bug here would.
    let lose_lent_entries = crate::failpoints::triggered("backup::lose-snapshot-entries");
    let task = tokio::spawn(async move {
        let mut m = skeleton;
        let mut pause = SNAPSHOT_INTERVAL;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut stopped => return,
            }
            // The entries are lent to the snapshot, not copied: a copy would be the peak memory
            // of a backup of many files. Workers meanwhile add to an empty list.
            m.files = match done.lock() {
                Ok(mut d) => std::mem::take(&mut *d),
                Err(_) => return,
            };
            m.backup.references = references_of(&m.files);
            let started = std::time::Instant::now();
            let saved = repo.save_inprogress(&label, &m).await;
            if lose_lent_entries {
                m.files.clear();
            }
            if let Ok(mut d) = done.lock() {
                let newer = std::mem::replace(&mut *d, std::mem::take(&mut m.files));
                d.extend(newer);
            }
            if let Err(e) = saved {
                tracing::warn!("unable to record backup progress: {e}");
            }
            // Recording progress takes at most about a twentieth of the backup's time.
            pause = SNAPSHOT_INTERVAL.max(started.elapsed() * 20);
        }
    });
    (stop, task)
}
