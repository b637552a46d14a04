//! What the fault tests share: running pgbr with failpoints, verify's findings, fingerprints of
//! restored directories, and a ledger of which data each backup holds.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::{as_pg, info, labels, snapshot, Cluster, Scratch, Stanza};

/// Runs pgbr (as the PostgreSQL user) with configuration `conf`, `args` and failpoints
/// `failpoints` (`FAILPOINTS`, see `pgbr_backup::failpoints`).
pub fn pgbr_fp(scratch: &Scratch, conf: &Path, args: &[&str], failpoints: &str) -> Output {
    let mut c = as_pg(&scratch.pgbr);
    c.arg(format!("--config={}", conf.display()))
        .args(args)
        .env("FAILPOINTS", failpoints);
    c.env_remove("PGBR_REPO1_CIPHER_PASS");
    c.output().expect("run pgbr")
}

/// Both outputs of a pgbr run, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs pgbr with crash point `failpoints` and checks that the point was reached: the process
/// died of SIGKILL.
pub fn crash(scratch: &Scratch, conf: &Path, args: &[&str], failpoints: &str) {
    let out = pgbr_fp(scratch, conf, args, failpoints);
    assert!(
        super::was_killed(&out.status),
        "{failpoints}: pgbr {args:?} was not killed ({}):\n{}",
        out.status,
        text(&out)
    );
}

/// `verify --output=json` (with `extra` arguments): its exit code and report.
pub fn verify(scratch: &Scratch, conf: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["verify", "--output=json"];
    args.extend_from_slice(extra);
    let out = scratch.pgbr(conf, &args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify json: {e}\n{}", text(&out)));
    (out.status.code().unwrap_or(-1), json)
}

/// The `object` of each entry of `list` (`errors` or `notes`) of a verify report.
pub fn objects<'a>(report: &'a serde_json::Value, list: &str) -> Vec<&'a str> {
    report[list]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["object"].as_str()).collect())
        .unwrap_or_default()
}

/// Verify passes, or fails (exit 14) naming only objects of the backups in `incomplete`. Returns
/// what it said, in a few words.
pub fn verify_passes_or_names(
    scratch: &Scratch,
    conf: &Path,
    stanza: &str,
    incomplete: &[String],
) -> String {
    let (code, report) = verify(scratch, conf, &[&format!("--stanza={stanza}")]);
    let errors = objects(&report, "errors");
    let notes = objects(&report, "notes");
    if code == 0 && errors.is_empty() {
        return if notes.is_empty() {
            "verify ok".into()
        } else {
            format!("verify ok, notes {notes:?}")
        };
    }
    assert_eq!(code, 14, "verify: {report:#}");
    assert!(
        !incomplete.is_empty()
            && errors
                .iter()
                .all(|o| incomplete.iter().any(|l| o.contains(l.as_str()))),
        "verify names more than the incomplete backups {incomplete:?}: {report:#}"
    );
    format!("verify 14 naming {errors:?}")
}

/// The backup directories of `stanza` in posix repository `repo` without a committed manifest.
pub fn incomplete_backups(repo: &Path, stanza: &str) -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir(repo.join("backup").join(stanza)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dirs
        .flatten()
        .filter(|e| e.path().is_dir() && !e.path().join("backup.manifest").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// A fingerprint of each entry under `dir` (kind, mode, contents), by name. The comment line
/// restore writes into `postgresql.auto.conf` carries the time of the restore and is left out.
pub fn fingerprint(dir: &Path) -> BTreeMap<String, u64> {
    snapshot(dir)
        .into_iter()
        .map(|(name, (kind, mode, mut contents))| {
            if name == "postgresql.auto.conf" {
                let text = String::from_utf8_lossy(&contents).into_owned();
                let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
                contents = kept.join("\n").into_bytes();
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (kind, mode, contents).hash(&mut h);
            (name, h.finish())
        })
        .collect()
}

/// Fails unless two fingerprints are the same, naming the entries that differ.
pub fn assert_same_tree(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>, what: &str) {
    let differ: Vec<&String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: these entries differ: {differ:?}"
    );
}

/// A number no other call in this test binary gets, to name directories.
pub fn unique() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Removes a directory a test made (and a cluster it ran, stopped).
pub fn remove(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
}

/// The restore arguments that stop at the backup's consistency point, into `dir`.
pub fn restore_args(stanza: &str, dir: &Path) -> Vec<String> {
    vec![
        format!("--stanza={stanza}"),
        "restore".into(),
        "--type=immediate".into(),
        "--target-action=promote".into(),
        format!("--pg1-path={}", dir.display()),
    ]
}

/// Which data each backup of stanza `main` holds (a digest of table `t`), and the fingerprint of
/// its restore: every restore of one backup must be the same, byte for byte.
pub struct Ledger {
    /// Label → digest of the data it must restore.
    pub digest: BTreeMap<String, String>,
    /// Label → fingerprint of its restored directory.
    pub tree: BTreeMap<String, BTreeMap<String, u64>>,
    /// The source's digest now.
    pub current: String,
    /// What each cell found, for the test's output.
    pub results: Vec<String>,
}

/// Digest of table `t` of cluster `c`.
pub fn digest(c: &Cluster) -> String {
    c.psql("select count(*) || ':' || md5(coalesce(string_agg(id || ':' || v, ',' order by id), '')) from t")
}

impl Ledger {
    pub fn new(env: &Stanza) -> Ledger {
        Ledger {
            digest: BTreeMap::new(),
            tree: BTreeMap::new(),
            current: digest(&env.src),
            results: Vec::new(),
        }
    }

    /// Changes the source's data (row `id`), so that the next backup holds something new.
    pub fn change(&mut self, env: &Stanza, id: usize) {
        env.src
            .psql(&format!("insert into t values ({id}, md5('{id}'))"));
        self.current = digest(&env.src);
    }

    /// Records the data of every backup listed that is new: what the source holds now (the data
    /// does not change between a killed command and the one that follows it).
    pub fn adopt(&mut self, env: &Stanza) {
        for label in labels(&info(&env.scratch, &env.conf)) {
            self.digest
                .entry(label)
                .or_insert_with(|| self.current.clone());
        }
    }

    /// The newest backup listed.
    pub fn latest(&self, env: &Stanza) -> String {
        labels(&info(&env.scratch, &env.conf))
            .pop()
            .expect("a backup is listed")
    }

    /// Restores the newest backup into a new directory and checks it: byte for byte the same as
    /// an earlier restore of it, or, the first time, a cluster that starts and holds the data the
    /// backup was taken of. Returns the label.
    pub fn check_latest_restores(&mut self, env: &Stanza) -> String {
        self.adopt(env);
        let label = self.latest(env);
        let dir = env.scratch.mkdir(&format!("check{}", unique()));
        let args = restore_args("main", &dir);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        env.scratch.pgbr_ok(&env.conf, &refs);
        self.check_restored(env, &label, &dir);
        remove(&dir);
        label
    }

    /// Checks `dir`, a restore of backup `label` (see [`Ledger::check_latest_restores`]).
    pub fn check_restored(&mut self, env: &Stanza, label: &str, dir: &Path) {
        let print = fingerprint(dir);
        if let Some(known) = self.tree.get(label) {
            assert_same_tree(known, &print, &format!("restores of {label}"));
            return;
        }
        let want = self
            .digest
            .get(label)
            .cloned()
            .expect("digest of the backup");
        let name = format!("started{}", unique());
        let mut c = Cluster::start_restored(&env.scratch, &name, dir.to_path_buf());
        assert_eq!(digest(&c), want, "backup {label} restores other data");
        c.stop();
        let _ = std::fs::remove_dir_all(env.scratch.path(&format!("{name}-sock")));
        self.tree.insert(label.to_string(), print);
    }
}

/// A directory of files no command may touch, and its snapshot.
pub struct Sentinel {
    pub dir: PathBuf,
    before: super::Snapshot,
}

impl Sentinel {
    pub fn new(scratch: &Scratch, name: &str) -> Sentinel {
        let dir = scratch.mkdir(name);
        for (i, text) in ["keep me", "", "postgresql.conf look-alike"]
            .iter()
            .enumerate()
        {
            std::fs::write(dir.join(format!("file{i}")), text).expect("write sentinel");
        }
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("sub/PG_VERSION"), "15\n").expect("write sentinel");
        super::chown_pg(&dir);
        let before = snapshot(&dir);
        Sentinel { dir, before }
    }

    /// Fails if anything under the sentinel directory changed.
    pub fn assert_untouched(&self, what: &str) {
        super::assert_unchanged(&self.before, &snapshot(&self.dir), what);
    }
}
