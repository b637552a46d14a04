//! Every option's definition: name, kind, default, commands and help.

use super::{Command, Indexed, OptionDef, OptionKind, Scope, MAX_REPO};

const REPO_COMMANDS: &[Command] = &[
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
    Command::ArchivePushAsync,
    Command::ArchiveGetAsync,
];
const SELECT_REPO_COMMANDS: &[Command] = &[
    Command::StanzaUpgrade,
    Command::StanzaDelete,
    Command::ArchiveGet,
    Command::Backup,
    Command::Restore,
    Command::Info,
    Command::Expire,
    Command::Verify,
    Command::Check,
];
const LOCK_COMMANDS: &[Command] = &[
    // check reads archive-push's last failure there.
    Command::Check,
    Command::StanzaCreate,
    Command::StanzaUpgrade,
    Command::StanzaDelete,
    Command::Backup,
    Command::Expire,
    Command::ArchivePush,
    Command::ArchiveGet,
    Command::ArchivePushAsync,
    Command::ArchiveGetAsync,
    Command::Stop,
    Command::Start,
];
const RETENTION_COMMANDS: &[Command] = &[Command::Backup, Command::Expire, Command::Verify];
const PG_CONNECT_COMMANDS: &[Command] = &[
    Command::StanzaCreate,
    Command::StanzaUpgrade,
    Command::Backup,
    Command::Check,
];
const PG_PATH_COMMANDS: &[Command] = &[
    Command::StanzaCreate,
    Command::StanzaUpgrade,
    Command::StanzaDelete,
    Command::ArchivePush,
    Command::Backup,
    Command::Restore,
    Command::Check,
];
const ASYNC_COMMANDS: &[Command] = &[
    Command::ArchivePush,
    Command::ArchiveGet,
    Command::ArchivePushAsync,
    Command::ArchiveGetAsync,
];
const LEVELS: &[&str] = &["off", "error", "warn", "info", "detail", "debug", "trace"];

const fn def(
    name: &'static str,
    kind: OptionKind,
    default: Option<&'static str>,
    commands: &'static [Command],
    help: &'static str,
) -> OptionDef {
    OptionDef {
        name,
        kind,
        default,
        indexed: Indexed::No,
        scope: Scope::Anywhere,
        secret: false,
        commands,
        help,
    }
}

/// A `repo<N>-` option taken by every repository command.
const fn repo_opt(
    name: &'static str,
    kind: OptionKind,
    default: Option<&'static str>,
    help: &'static str,
) -> OptionDef {
    indexed(def(name, kind, default, REPO_COMMANDS, help), Indexed::Repo)
}

const fn indexed(mut d: OptionDef, family: Indexed) -> OptionDef {
    d.indexed = family;
    d
}

const fn command_line(mut d: OptionDef) -> OptionDef {
    d.scope = Scope::CommandLine;
    d
}

const fn secret(mut d: OptionDef) -> OptionDef {
    d.secret = true;
    d
}

/// Every option pgbr knows.
pub const OPTIONS: &[OptionDef] = &[
    def(
        "archive-async",
        OptionKind::Bool,
        Some("n"),
        ASYNC_COMMANDS,
        "archive-push by a background worker that pushes ready WAL ahead; archive-get prefetches",
    ),
    def(
        "spool-path",
        OptionKind::Path,
        Some("/var/spool/pgbr"),
        ASYNC_COMMANDS,
        "spool directory of asynchronous archiving",
    ),
    def(
        "archive-push-queue-max",
        OptionKind::Size,
        None,
        ASYNC_COMMANDS,
        "drop WAL (with an error) rather than let more than this wait to be pushed (e.g. 4GB)",
    ),
    def(
        "archive-get-queue-max",
        OptionKind::Size,
        Some("128MB"),
        ASYNC_COMMANDS,
        "WAL to prefetch ahead of recovery",
    ),
    command_line(def(
        "config",
        OptionKind::Path,
        Some("/etc/pgbr/pgbr.conf"),
        &[],
        "configuration file",
    )),
    command_line(def(
        "stanza",
        OptionKind::Text,
        None,
        &[],
        "the stanza (one cluster's backups) to act on",
    )),
    def(
        "log-level-console",
        OptionKind::Choice(LEVELS),
        Some("warn"),
        &[],
        "how much to log on stderr",
    ),
    indexed(
        def(
            "pg-path",
            OptionKind::Path,
            None,
            PG_PATH_COMMANDS,
            "PostgreSQL data directory",
        ),
        Indexed::Pg,
    ),
    indexed(
        def(
            "pg-port",
            OptionKind::Int { min: 1, max: 65535 },
            Some("5432"),
            PG_CONNECT_COMMANDS,
            "PostgreSQL port",
        ),
        Indexed::Pg,
    ),
    indexed(
        def(
            "pg-socket-path",
            OptionKind::Path,
            Some("/var/run/postgresql"),
            PG_CONNECT_COMMANDS,
            "PostgreSQL unix socket directory",
        ),
        Indexed::Pg,
    ),
    indexed(
        def(
            "pg-user",
            OptionKind::Text,
            Some("postgres"),
            PG_CONNECT_COMMANDS,
            "PostgreSQL user to connect as",
        ),
        Indexed::Pg,
    ),
    indexed(
        def(
            "pg-database",
            OptionKind::Text,
            Some("postgres"),
            PG_CONNECT_COMMANDS,
            "PostgreSQL database to connect to",
        ),
        Indexed::Pg,
    ),
    indexed(
        def(
            "repo-path",
            OptionKind::Path,
            Some("/var/lib/pgbr"),
            REPO_COMMANDS,
            "repository path (the prefix inside a bucket for object stores)",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-type",
            OptionKind::Choice(&["posix", "s3", "azure", "gcs"]),
            Some("posix"),
            REPO_COMMANDS,
            "repository storage type: posix, s3, azure or gcs",
        ),
        Indexed::Repo,
    ),
    repo_opt(
        "repo-s3-bucket",
        OptionKind::Text,
        None,
        "S3 bucket (required with repo-type=s3)",
    ),
    repo_opt(
        "repo-s3-endpoint",
        OptionKind::Text,
        None,
        "S3 endpoint URL or host (default: AWS's endpoint for the region)",
    ),
    repo_opt(
        "repo-s3-region",
        OptionKind::Text,
        None,
        "S3 region (default: from the environment, else us-east-1)",
    ),
    secret(repo_opt(
        "repo-s3-key",
        OptionKind::Text,
        None,
        "S3 access key id (default: credentials from the environment or the instance role)",
    )),
    secret(repo_opt(
        "repo-s3-key-secret",
        OptionKind::Text,
        None,
        "S3 secret access key (required with repo-s3-key)",
    )),
    secret(repo_opt(
        "repo-s3-token",
        OptionKind::Text,
        None,
        "S3 session token",
    )),
    repo_opt(
        "repo-s3-uri-style",
        OptionKind::Choice(&["host", "path"]),
        Some("host"),
        "S3 bucket addressing: host (virtual-hosted) or path",
    ),
    repo_opt(
        "repo-azure-account",
        OptionKind::Text,
        None,
        "Azure storage account (required with repo-type=azure)",
    ),
    repo_opt(
        "repo-azure-container",
        OptionKind::Text,
        None,
        "Azure container (required with repo-type=azure)",
    ),
    secret(repo_opt(
        "repo-azure-key",
        OptionKind::Text,
        None,
        "Azure shared key or SAS token (default: credentials from the environment)",
    )),
    repo_opt(
        "repo-azure-key-type",
        OptionKind::Choice(&["shared", "sas"]),
        Some("shared"),
        "kind of repo-azure-key: shared or sas",
    ),
    repo_opt(
        "repo-azure-endpoint",
        OptionKind::Text,
        None,
        "Azure blob service URL (default: https://<account>.blob.core.windows.net)",
    ),
    repo_opt(
        "repo-azure-uri-style",
        OptionKind::Choice(&["host", "path"]),
        None,
        "how repo-azure-endpoint names the account: host (<account>.<host>) or path (<endpoint>/<account>); default: host for Azure's clouds, path for other endpoints",
    ),
    repo_opt(
        "repo-gcs-bucket",
        OptionKind::Text,
        None,
        "GCS bucket (required with repo-type=gcs)",
    ),
    secret(repo_opt(
        "repo-gcs-key",
        OptionKind::Text,
        None,
        "GCS service account key file (key type service) or token (key type token)",
    )),
    repo_opt(
        "repo-gcs-key-type",
        OptionKind::Choice(&["service", "token", "auto"]),
        Some("service"),
        "kind of repo-gcs-key: service, token, or auto (application default credentials)",
    ),
    repo_opt(
        "repo-gcs-endpoint",
        OptionKind::Text,
        None,
        "GCS base URL (default: Google's)",
    ),
    repo_opt(
        "repo-storage-verify-tls",
        OptionKind::Bool,
        Some("y"),
        "verify the object store's TLS certificate",
    ),
    repo_opt(
        "repo-storage-ca-file",
        OptionKind::Path,
        None,
        "PEM file of extra trusted CA certificates for the object store",
    ),
    def(
        "repo",
        OptionKind::Int {
            min: 1,
            max: MAX_REPO as i64,
        },
        None,
        SELECT_REPO_COMMANDS,
        "repository to use (default: backup, expire, verify, check: repo1; restore, archive-get, info: every repository, first that has what is needed)",
    ),
    indexed(
        def(
            "repo-cipher-type",
            OptionKind::Choice(&["none", "aes-256-gcm", "aes-256-cbc"]),
            Some("none"),
            REPO_COMMANDS,
            "encryption of the repository",
        ),
        Indexed::Repo,
    ),
    secret(indexed(
        def(
            "repo-cipher-pass",
            OptionKind::Text,
            None,
            REPO_COMMANDS,
            "repository passphrase",
        ),
        Indexed::Repo,
    )),
    def(
        "compress-type",
        OptionKind::Choice(&["none", "zst", "gz", "lz4"]),
        Some("zst"),
        &[Command::ArchivePush, Command::ArchivePushAsync, Command::Backup],
        "compression of stored files",
    ),
    def(
        "compress-level",
        OptionKind::Int { min: 0, max: 22 },
        None,
        &[Command::ArchivePush, Command::ArchivePushAsync, Command::Backup],
        "compression level (default: zst 3, gz 6)",
    ),
    def(
        "process-max",
        OptionKind::Int { min: 1, max: 256 },
        Some("1"),
        &[
            Command::Backup,
            Command::Restore,
            Command::Verify,
            Command::ArchivePush,
            Command::ArchiveGet,
            Command::ArchivePushAsync,
            Command::ArchiveGetAsync,
        ],
        "parallel workers",
    ),
    def(
        "expire-auto",
        OptionKind::Bool,
        Some("y"),
        &[Command::Backup],
        "apply the retention (expire) after a successful backup",
    ),
    def(
        "start-fast",
        OptionKind::Bool,
        Some("n"),
        &[Command::Backup],
        "force a checkpoint to start the backup at once",
    ),
    def(
        "archive-timeout",
        OptionKind::Seconds {
            min: 0.1,
            max: 86400.0,
        },
        Some("60"),
        &[Command::Backup, Command::Check, Command::ArchivePush],
        "seconds to wait for WAL to reach the archive",
    ),
    def(
        "archive-check",
        OptionKind::Bool,
        Some("y"),
        &[Command::Backup],
        "wait until the backup's WAL is archived",
    ),
    def(
        "archive-copy",
        OptionKind::Bool,
        Some("n"),
        &[Command::Backup],
        "also store the backup's WAL inside the backup",
    ),
    def(
        "backup-standby",
        OptionKind::Bool,
        Some("n"),
        &[Command::Backup],
        "copy files from the standby in pg2-*, coordinating with the primary in pg1-*",
    ),
    def(
        "type",
        OptionKind::Text,
        None,
        &[Command::Backup, Command::Restore],
        "backup: full, diff, incr; restore: default, immediate, time, xid, lsn, name, standby, preserve",
    ),
    def(
        "target",
        OptionKind::Text,
        None,
        &[Command::Restore],
        "recovery target: a time, xid, LSN or restore point name, per --type",
    ),
    def(
        "target-action",
        OptionKind::Choice(&["pause", "promote", "shutdown"]),
        None,
        &[Command::Restore],
        "what the server does on reaching the target (PostgreSQL's default: pause)",
    ),
    def(
        "target-exclusive",
        OptionKind::Bool,
        Some("n"),
        &[Command::Restore],
        "stop just before the target (time, xid, lsn) instead of just after it",
    ),
    def(
        "target-timeline",
        OptionKind::Text,
        None,
        &[Command::Restore],
        "timeline to recover along: latest, current or a timeline id",
    ),
    def(
        "set",
        OptionKind::Text,
        None,
        &[Command::Restore, Command::Info, Command::Expire],
        "backup label to restore or show (default: latest); expire: the backup to remove",
    ),
    def(
        "delta",
        OptionKind::Bool,
        Some("n"),
        &[Command::Restore, Command::Backup],
        "restore: rewrite only what differs in an existing directory; backup: compare files by checksum, not size and time",
    ),
    indexed(
        def(
            "repo-bundle",
            OptionKind::Bool,
            Some("y"),
            &[Command::Backup],
            "pack small files into bundle objects (pgBackRest's default is n)",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-bundle-size",
            OptionKind::Size,
            Some("20MB"),
            &[Command::Backup],
            "target size of a bundle object",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-bundle-limit",
            OptionKind::Size,
            Some("2MB"),
            &[Command::Backup],
            "files smaller than this go into bundles",
        ),
        Indexed::Repo,
    ),
    def(
        "force",
        OptionKind::Bool,
        Some("n"),
        &[
            Command::Restore,
            Command::Expire,
            Command::Stop,
            Command::StanzaDelete,
        ],
        "restore over an existing directory, rewriting every file; expire --set: allow the newest full backup; stop: terminate a running pgbr; stanza-delete: even if PostgreSQL runs in pg1-path",
    ),
    def(
        "tablespace-map",
        OptionKind::List,
        None,
        &[Command::Restore],
        "restore a tablespace elsewhere: OID=PATH or NAME=PATH (repeatable)",
    ),
    def(
        "output",
        OptionKind::Choice(&["text", "json", "pgbr-json", "prometheus"]),
        Some("text"),
        &[Command::Info, Command::Verify],
        "output format: text, json (info: pgBackRest's schema), pgbr-json (pgbr's own), prometheus (info: Prometheus' text format)",
    ),
    def(
        "lock-path",
        OptionKind::Path,
        Some("/tmp/pgbr"),
        LOCK_COMMANDS,
        "directory of the per-stanza lock and stop files, and of archive-push's last failure",
    ),
    indexed(
        def(
            "repo-retention-full",
            OptionKind::Int {
                min: 1,
                max: 9_999_999,
            },
            None,
            RETENTION_COMMANDS,
            "full backups to keep (count), or days to keep them (time)",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-retention-full-type",
            OptionKind::Choice(&["count", "time"]),
            Some("count"),
            RETENTION_COMMANDS,
            "whether repo-retention-full counts backups or days",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-retention-diff",
            OptionKind::Int {
                min: 1,
                max: 9_999_999,
            },
            None,
            RETENTION_COMMANDS,
            "differential backups to keep",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-retention-archive",
            OptionKind::Int {
                min: 1,
                max: 9_999_999,
            },
            None,
            RETENTION_COMMANDS,
            "backups (of repo-retention-archive-type) whose WAL is kept for point-in-time recovery",
        ),
        Indexed::Repo,
    ),
    indexed(
        def(
            "repo-retention-archive-type",
            OptionKind::Choice(&["full", "diff", "incr"]),
            Some("full"),
            RETENTION_COMMANDS,
            "which backups repo-retention-archive counts",
        ),
        Indexed::Repo,
    ),
    def(
        "dry-run",
        OptionKind::Bool,
        Some("n"),
        &[Command::Expire],
        "print what would be removed, remove nothing",
    ),
];
