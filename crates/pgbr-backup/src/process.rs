//! Process-wide settings for a program that runs the engine's commands: made once, before any
//! other thread exists (the `pgbr` binary makes them first thing in `main`).

use crate::options::Command;

/// Tunes glibc's malloc for running `command`; call it before any other thread exists.
///
/// - At most one arena per CPU (glibc allows eight per CPU): buffers allocated on the runtime's
///   I/O threads and freed on its workers otherwise fragment across many arenas (a restore then
///   peaks at half as much memory again, no faster).
/// - For backup, which allocates buffers of every size for every file, buffers of 256 KiB and
///   more stay mapped on their own: glibc otherwise raises that threshold to the largest buffer
///   freed, and buffers of up to 32 MiB then fragment the arenas (a fifth more peak memory, no
///   faster). Not for restore: mapping its multi-megabyte ranged reads each time costs a tenth
///   more time.
///
/// Does nothing on other platforms.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator(command: Command) {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cpus.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets allocator parameters; the caller runs it before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        if command == Command::Backup {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}

/// Tunes the allocator for `command` (on glibc only; nothing here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator(_command: Command) {}
