//! The commands pgbr runs.

use std::fmt;

/// The commands pgbr runs; options declare which of them they apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    /// Record the cluster's identity in the repository.
    StanzaCreate,
    /// Archive one WAL file (PostgreSQL's `archive_command`).
    ArchivePush,
    /// Fetch one WAL file (PostgreSQL's `restore_command`).
    ArchiveGet,
    /// Take a backup.
    Backup,
    /// Restore a backup.
    Restore,
    /// Describe stanzas, backups and the archive.
    Info,
    /// Remove backups and WAL beyond the retention policy.
    Expire,
    /// Check every object of the repository.
    Verify,
    /// Check the configuration, the connection and that WAL reaches the archive.
    Check,
    /// The background worker of asynchronous `archive-push` (started by pgbr itself).
    ArchivePushAsync,
    /// The background prefetch worker of asynchronous `archive-get` (started by pgbr itself).
    ArchiveGetAsync,
    /// Print the version.
    Version,
    /// Stop pgbr commands for a stanza (or every stanza): write the stop file.
    Stop,
    /// Allow pgbr commands again: remove the stop file.
    Start,
    /// Record a new cluster identity after `pg_upgrade` (or a new cluster for the stanza).
    StanzaUpgrade,
    /// Remove a stopped stanza and everything it holds from the repository.
    StanzaDelete,
}

impl Command {
    /// Every command, in the order help lists them.
    pub const ALL: [Command; 16] = [
        Command::StanzaCreate,
        Command::StanzaUpgrade,
        Command::StanzaDelete,
        Command::ArchivePush,
        Command::ArchiveGet,
        Command::Backup,
        Command::Restore,
        Command::Info,
        Command::Expire,
        Command::Verify,
        Command::Check,
        Command::Stop,
        Command::Start,
        Command::ArchivePushAsync,
        Command::ArchiveGetAsync,
        Command::Version,
    ];

    /// The command's name on the command line and in `[global:<command>]` sections.
    pub fn name(self) -> &'static str {
        match self {
            Command::StanzaCreate => "stanza-create",
            Command::ArchivePush => "archive-push",
            Command::ArchiveGet => "archive-get",
            Command::Backup => "backup",
            Command::Restore => "restore",
            Command::Info => "info",
            Command::Expire => "expire",
            Command::Verify => "verify",
            Command::Check => "check",
            Command::ArchivePushAsync => "archive-push-async",
            Command::ArchiveGetAsync => "archive-get-async",
            Command::Version => "version",
            Command::Stop => "stop",
            Command::Start => "start",
            Command::StanzaUpgrade => "stanza-upgrade",
            Command::StanzaDelete => "stanza-delete",
        }
    }

    /// The command named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the command needs `--stanza`.
    pub fn needs_stanza(self) -> bool {
        !matches!(
            self,
            Command::Info | Command::Version | Command::Stop | Command::Start
        )
    }

    /// One line of help for the command.
    pub fn summary(self) -> &'static str {
        match self {
            Command::StanzaCreate => "record the cluster's identity in the repository",
            Command::ArchivePush => "archive a WAL file (use in archive_command)",
            Command::ArchiveGet => "fetch a WAL file from the archive (use in restore_command)",
            Command::Backup => "back up a running cluster",
            Command::Restore => "restore a backup into a data directory",
            Command::Info => "show stanzas, backups and the WAL archive",
            Command::Expire => "remove backups and WAL beyond the retention policy",
            Command::Verify => {
                "check every backup, manifest, info file and WAL segment in the repository"
            }
            Command::Check => {
                "check the configuration, the connection and that WAL reaches the archive"
            }
            Command::ArchivePushAsync => "background worker of asynchronous archive-push",
            Command::ArchiveGetAsync => "background prefetch worker of asynchronous archive-get",
            Command::Version => "print the version",
            Command::Stop => {
                "stop pgbr commands for the stanza (every stanza without --stanza); --force also terminates a running one"
            }
            Command::Start => "allow pgbr commands again after stop",
            Command::StanzaUpgrade => {
                "record the cluster's new identity after pg_upgrade (old backups stay restorable)"
            }
            Command::StanzaDelete => {
                "remove a stopped stanza and all its backups and WAL from the repository"
            }
        }
    }

    /// Commands pgbr starts itself; help does not list them.
    pub fn is_internal(self) -> bool {
        matches!(self, Command::ArchivePushAsync | Command::ArchiveGetAsync)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
