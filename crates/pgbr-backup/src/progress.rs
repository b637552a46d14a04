//! Progress reporting: a small trait the caller implements (the library never draws), with a
//! no-op implementation for callers that do not care.

/// Receives progress from long-running commands. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// Work is about to start: `files` files, `total_bytes` bytes.
    fn start(&self, _total_bytes: u64, _files: u64) {}
    /// One file is done (called from worker threads).
    fn file_done(&self, _name: &str, _bytes: u64) {}
    /// A step of the command, for logs.
    fn message(&self, _text: &str) {}
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
