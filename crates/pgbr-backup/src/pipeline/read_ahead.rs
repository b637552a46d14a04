//! Read-ahead for bundles: their files opened, and read in by the kernel, before the one reader
//! that reads them in order needs them.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex};

/// How many files [`OpenAhead`] opens before the reader needs them (each holds a descriptor).
pub(super) const OPEN_AHEAD: usize = 64;

/// Opens the files of a bundle ahead of the one reader that reads them in order, and asks the
/// kernel to read them in ([`pgbr_storage::posix::will_need`]). A bundle's files are small: read
/// one after another on a cold cache, each read would wait for the disk alone, and the open of
/// each for its inode. The reader takes the opened files over, so a warm cache pays no extra
/// open.
pub(super) struct OpenAhead<'a> {
    paths: Vec<&'a Path>,
    opened: Vec<Mutex<Option<File>>>,
    position: Mutex<Position>,
    moved: Condvar,
}

/// Where the reader is, and where the opening thread asked to be woken.
struct Position {
    /// The index the reader is at; `None` once it has finished.
    reading: Option<usize>,
    /// The opening thread sleeps until the reader reaches this index (a batch at a time, so
    /// that a reader faster than the disk does not wake it for every file).
    wake_at: Option<usize>,
}

impl<'a> OpenAhead<'a> {
    pub(super) fn new(paths: Vec<&'a Path>) -> Self {
        let opened = paths.iter().map(|_| Mutex::new(None)).collect();
        Self {
            paths,
            opened,
            position: Mutex::new(Position {
                reading: Some(0),
                wake_at: None,
            }),
            moved: Condvar::new(),
        }
    }

    /// The opening thread: at most [`OPEN_AHEAD`] files ahead of the reader, never behind it.
    pub(super) fn run(&self) {
        let mut next = 1;
        while next < self.paths.len() {
            let Ok(mut position) = self.position.lock() else {
                return;
            };
            loop {
                match position.reading {
                    None => return,
                    Some(at) if next >= at + OPEN_AHEAD => {
                        position.wake_at = Some(next - OPEN_AHEAD / 2);
                        position = match self.moved.wait(position) {
                            Ok(p) => p,
                            Err(_) => return,
                        };
                    }
                    Some(at) => {
                        next = next.max(at + 1);
                        break;
                    }
                }
            }
            drop(position);
            let Some(path) = self.paths.get(next) else {
                return;
            };
            // A file that cannot be opened is left to the reader, which reports why.
            if let Ok(file) = File::open(path) {
                pgbr_storage::posix::will_need(&file);
                if let Ok(mut slot) = self.opened[next].lock() {
                    *slot = Some(file);
                }
            }
            next += 1;
        }
    }

    /// The reader: file `index`, opened ahead or now.
    pub(super) fn open(&self, index: usize) -> io::Result<File> {
        self.set_reading(Some(index));
        let ahead = self.opened[index]
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        match ahead {
            Some(file) => Ok(file),
            None => File::open(self.paths[index]),
        }
    }

    /// A guard that stops the opening thread when dropped (the opened files go with `self`).
    pub(super) fn stop_when_dropped(&self) -> StopWhenDropped<'_, 'a> {
        StopWhenDropped(self)
    }

    fn set_reading(&self, index: Option<usize>) {
        let Ok(mut position) = self.position.lock() else {
            return;
        };
        position.reading = index;
        let wake = match (index, position.wake_at) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(at), Some(wake_at)) => at >= wake_at,
        };
        if wake {
            position.wake_at = None;
            self.moved.notify_one();
        }
    }
}

/// Stops the opening thread of an [`OpenAhead`] when dropped.
pub(super) struct StopWhenDropped<'s, 'a>(&'s OpenAhead<'a>);

impl<'a> std::ops::Deref for StopWhenDropped<'_, 'a> {
    type Target = OpenAhead<'a>;
    fn deref(&self) -> &OpenAhead<'a> {
        self.0
    }
}

impl Drop for StopWhenDropped<'_, '_> {
    fn drop(&mut self) {
        self.0.set_reading(None);
    }
}
