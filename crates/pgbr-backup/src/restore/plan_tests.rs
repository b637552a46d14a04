//! Tests of the restore plan: what it removes and keeps on disk, and a property test that no
//! plan, for any manifest that loads and any destination contents, changes anything outside
//! its destinations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgbr_manifest::{Checksum, FileEntry, LinkEntry, Manifest, PathEntry, Target};
use proptest::prelude::*;

use super::*;

fn file(target: &str, name: &str) -> FileEntry {
    FileEntry {
        target: target.into(),
        name: name.into(),
        size: 0,
        mtime: 0,
        mode: 0o600,
        checksum: Checksum::of(b""),
        reference: None,
        stored_size: 0,
        bundle: None,
        block_map: None,
        page_errors: Vec::new(),
    }
}

fn dir(target: &str, name: &str, mode: u32) -> PathEntry {
    PathEntry {
        target: target.into(),
        name: name.into(),
        mode,
    }
}

fn target(name: &str, path: &str) -> Target {
    Target {
        name: name.into(),
        path: path.into(),
        tablespace_oid: name.strip_prefix("pg_tblspc/").and_then(|o| o.parse().ok()),
        tablespace_name: None,
    }
}

/// What is left under `root`, relative names sorted (directories too); a name that is not
/// UTF-8 is shown lossily.
fn left_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).expect("below root");
            out.push(rel.to_string_lossy().into_owned());
            if e.file_type().expect("type").is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn same_cluster(targets: &[&str]) -> BTreeMap<String, Found> {
    targets
        .iter()
        .map(|t| (t.to_string(), Found::SameCluster))
        .collect()
}

#[test]
fn extras_are_removed_and_what_the_backup_has_is_kept() {
    use std::os::unix::ffi::OsStrExt;
    let mut manifest = Manifest {
        targets: vec![target("pg_data", "/x")],
        paths: vec![
            dir("pg_data", "", 0o700),
            dir("pg_data", "base", 0o700),
            dir("pg_data", "base/1", 0o700),
        ],
        links: vec![LinkEntry {
            target: "pg_data".into(),
            name: "kept-link".into(),
            destination: "/elsewhere".into(),
        }],
        files: vec![
            file("pg_data", "PG_VERSION"),
            file("pg_data", "base/1/100"),
            file("pg_data", "base/1/102"),
        ],
        ..Manifest::default()
    };
    let build = |root: &Path| {
        std::fs::create_dir_all(root.join("base/1")).expect("mkdir");
        std::fs::create_dir_all(root.join("base/2/deeper")).expect("mkdir");
        // A directory where the backup has a file.
        std::fs::create_dir_all(root.join("base/1/102")).expect("mkdir");
        for name in [
            "PG_VERSION",
            "base/1/100",
            "base/1/101",
            "base/2/deeper/x",
            MARKER,
        ] {
            std::fs::write(root.join(name), b"").expect("write");
        }
        let not_utf8 = std::ffi::OsStr::from_bytes(b"base/1/\xff\xfe");
        std::fs::write(root.join(not_utf8), b"").expect("write");
        std::os::unix::fs::symlink("/elsewhere", root.join("kept-link")).expect("link");
        std::os::unix::fs::symlink("/nowhere", root.join("stray-link")).expect("link");
        // A link where the backup has a directory: removed, never followed.
        std::os::unix::fs::symlink("/", root.join("base/1/dir-link")).expect("link");
    };
    let kept = [
        "PG_VERSION",
        "base",
        "base/1",
        "base/1/100",
        "kept-link",
        MARKER,
    ];
    // Sorted, as every loaded manifest is; then unsorted, as one built in memory may be.
    for round in 0..2 {
        if round == 1 {
            manifest.files.reverse();
        }
        let root = tempfile::tempdir().expect("tempdir");
        build(root.path());
        let dests = BTreeMap::from([("pg_data".to_string(), root.path().to_path_buf())]);
        let plan = Plan::new(&manifest, &dests, &same_cluster(&["pg_data"]), &Disk).expect("plan");
        // Planned, not done: nothing is removed before the plan is carried out.
        assert!(root.path().join("stray-link").symlink_metadata().is_ok());
        let removed = plan.remove().expect("remove");
        assert_eq!(left_under(root.path()), kept, "round {round}");
        // base/1/101, base/1/102 (a directory, with what it held), base/1/dir-link, base/2,
        // the name that is not UTF-8, stray-link.
        assert_eq!(removed, 6, "round {round}");
    }
}

#[test]
fn a_tablespace_keeps_what_other_clusters_have_beside_the_backups_version_directory() {
    let manifest = Manifest {
        targets: vec![target("pg_data", "/x"), target("pg_tblspc/16400", "/ts")],
        paths: vec![
            dir("pg_data", "", 0o700),
            dir("pg_tblspc/16400", "", 0o700),
            dir("pg_tblspc/16400", "PG_15_202209061", 0o700),
        ],
        files: vec![file("pg_tblspc/16400", "PG_15_202209061/16401")],
        ..Manifest::default()
    };
    let pg = tempfile::tempdir().expect("tempdir");
    let ts = tempfile::tempdir().expect("tempdir");
    for name in ["PG_15_202209061/5", "PG_16_202307071/5"] {
        std::fs::create_dir_all(ts.path().join(name)).expect("mkdir");
    }
    std::fs::write(ts.path().join("PG_15_202209061/5/1"), b"").expect("write");
    std::fs::write(ts.path().join("PG_16_202307071/5/1"), b"").expect("write");
    let dests = BTreeMap::from([
        ("pg_data".to_string(), pg.path().to_path_buf()),
        ("pg_tblspc/16400".to_string(), ts.path().to_path_buf()),
    ]);
    let found = same_cluster(&["pg_data", "pg_tblspc/16400"]);
    let plan = Plan::new(&manifest, &dests, &found, &Disk).expect("plan");
    assert_eq!(plan.remove().expect("remove"), 1);
    assert_eq!(
        left_under(ts.path()),
        [
            "PG_15_202209061",
            "PG_16_202307071",
            "PG_16_202307071/5",
            "PG_16_202307071/5/1"
        ]
    );
    // The tablespace's link in the data directory leads to its destination.
    assert_eq!(
        plan.links,
        [(pg.path().join("pg_tblspc/16400"), ts.path().to_path_buf())]
    );
}

#[test]
fn modes_are_masked_to_what_postgresql_creates() {
    assert_eq!(file_mode(0o6777), 0o640);
    assert_eq!(file_mode(0o4755), 0o640);
    assert_eq!(file_mode(0o000), 0o600);
    assert_eq!(file_mode(0o640), 0o640);
    assert_eq!(dir_mode(0o7777), 0o750);
    assert_eq!(dir_mode(0o1777), 0o750);
    assert_eq!(dir_mode(0o000), 0o700);
    let manifest = Manifest {
        targets: vec![target("pg_data", "/x")],
        paths: vec![dir("pg_data", "", 0o7777), dir("pg_data", "base", 0o2755)],
        ..Manifest::default()
    };
    let dests = BTreeMap::from([("pg_data".to_string(), PathBuf::from("/r"))]);
    let found = BTreeMap::from([("pg_data".to_string(), Found::Nothing)]);
    let plan = Plan::new(&manifest, &dests, &found, &Disk).expect("plan");
    assert_eq!(
        plan.directories,
        [
            (PathBuf::from("/r"), 0o750),
            (PathBuf::from("/r/base"), 0o750)
        ]
    );
}

/// An in-memory file system: what a plan is carried out on in the property test.
#[derive(Clone, Debug, Default)]
struct Model {
    nodes: BTreeMap<PathBuf, Node>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Link(PathBuf),
}

impl Model {
    fn add(&mut self, path: &Path, node: Node) {
        for a in path.ancestors().skip(1) {
            self.nodes.entry(a.to_path_buf()).or_insert(Node::Dir);
        }
        self.nodes.insert(path.to_path_buf(), node);
    }

    /// Where `path` leads, following links in every component (the last one too when
    /// `follow_last`), as the kernel does; `None` for a loop.
    fn resolve(&self, path: &Path, follow_last: bool, depth: u32) -> Option<PathBuf> {
        if depth > 16 {
            return None;
        }
        let names: Vec<_> = path.components().skip(1).collect();
        let mut at = PathBuf::from("/");
        for (i, name) in names.iter().enumerate() {
            let next = at.join(name);
            let last = i + 1 == names.len();
            at = match self.nodes.get(&next) {
                Some(Node::Link(to)) if !last || follow_last => {
                    self.resolve(to, true, depth + 1)?
                }
                _ => next,
            };
        }
        Some(at)
    }

    fn remove(&mut self, path: &Path) {
        self.nodes.retain(|p, _| !p.starts_with(path));
    }

    /// Everything outside `/dest`.
    fn outside(&self) -> Vec<(PathBuf, Node)> {
        self.nodes
            .iter()
            .filter(|(p, _)| !p.starts_with("/dest"))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect()
    }
}

impl Tree for Model {
    fn list(&self, dir: &Path) -> crate::error::Result<Vec<(std::ffi::OsString, Kind)>> {
        let dir = self.resolve(dir, true, 0).unwrap_or_default();
        Ok(self
            .nodes
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .map(|(p, n)| {
                let kind = match n {
                    Node::Dir => Kind::Dir,
                    Node::File => Kind::File,
                    Node::Link(_) => Kind::Link,
                };
                (p.file_name().unwrap_or_default().to_os_string(), kind)
            })
            .collect())
    }
}

/// Carries `plan` of `manifest` out on `fs` as the restore does, and returns every place it
/// changed, as the kernel resolves it.
fn carry_out(plan: &Plan, manifest: &Manifest, fs: &mut Model) -> Vec<PathBuf> {
    let mut touched = Vec::new();
    // Each path as a call with it resolves it: the parent's links are followed; the last
    // component's too when `follow_last` (a chmod, an open without O_EXCL).
    let mut at = |fs: &Model, path: &Path, follow_last: bool| -> PathBuf {
        let place = fs
            .resolve(path, follow_last, 0)
            .unwrap_or_else(|| PathBuf::from("/loop"));
        touched.push(place.clone());
        place
    };
    for (path, _) in &plan.removals {
        let place = at(fs, path, false);
        fs.remove(&place);
    }
    for (path, _) in &plan.directories {
        let place = at(fs, path, false);
        fs.nodes.entry(place).or_insert(Node::Dir);
        // The mode is set through a link, were there one.
        at(fs, path, true);
    }
    for (link, to) in &plan.links {
        let place = at(fs, link, false);
        fs.nodes.insert(place, Node::Link(to.clone()));
    }
    for f in &manifest.files {
        let place = at(fs, &plan.file_path(f), true);
        fs.nodes.insert(place, Node::File);
    }
    touched
}

/// Names the generated manifests and destinations use: plain ones, PostgreSQL's, hostile ones.
const NAMES: &[&str] = &[
    "base",
    "base/1",
    "base/1/100",
    "global",
    "global/pg_control",
    "pg_wal",
    "pg_wal/000000010000000000000001",
    "pg_tblspc",
    "pg_tblspc/16400",
    "pg_tblspc/16400/x",
    "PG_15_1",
    "PG_15_1/5",
    "PG_15_1/5/16401",
    "a",
    "a/b",
    "a/b/c",
];
const HOSTILE: &[&str] = &[
    "..",
    "../etc",
    "a/../../x",
    "/etc/passwd",
    ".",
    "a//b",
    "a/",
];
const LEADS_TO: &[&str] = &[
    "/outside",
    "/outside/deep",
    "/dest/pg",
    "/dest/ts",
    "/",
    "a",
];

fn entry_strategy() -> impl Strategy<Value = (bool, String, u8, String)> {
    (
        any::<bool>(),
        prop_oneof![
            20 => prop::sample::select(NAMES).prop_map(str::to_string),
            1 => prop::sample::select(HOSTILE).prop_map(str::to_string),
        ],
        0u8..3,
        prop::sample::select(LEADS_TO).prop_map(str::to_string),
    )
}

/// A manifest from `entries` (in the tablespace when the flag says so, as a path, file or
/// link); the first entry of a name wins.
fn manifest_of(entries: &[(bool, String, u8, String)], mode: u32) -> Manifest {
    let mut m = Manifest {
        backup: pgbr_manifest::BackupMeta {
            label: pgbr_manifest::new_label(pgbr_manifest::BackupType::Full, None, 1_795_641_390),
            ..Default::default()
        },
        targets: vec![
            target("pg_data", "/orig/pg"),
            target("pg_tblspc/16400", "/orig/ts"),
        ],
        paths: vec![dir("pg_data", "", mode), dir("pg_tblspc/16400", "", mode)],
        ..Manifest::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (in_ts, name, kind, leads_to) in entries {
        let t = if *in_ts { "pg_tblspc/16400" } else { "pg_data" };
        if !seen.insert((t, name.clone())) {
            continue;
        }
        match kind {
            0 => m.paths.push(dir(t, name, mode)),
            1 => m.files.push(FileEntry {
                mode,
                ..file(t, name)
            }),
            _ => m.links.push(LinkEntry {
                target: t.into(),
                name: name.clone(),
                destination: leads_to.clone(),
            }),
        }
    }
    m
}

/// Destinations holding `existing` (in the tablespace when the flag says so), beside an
/// `/outside` tree.
fn model_of(existing: &[(bool, String, u8, String)]) -> Model {
    let mut fs = Model::default();
    fs.add(Path::new("/outside/deep/precious"), Node::File);
    fs.add(Path::new("/dest/pg"), Node::Dir);
    fs.add(Path::new("/dest/ts"), Node::Dir);
    for (in_ts, name, kind, leads_to) in existing {
        if HOSTILE.contains(&name.as_str()) {
            continue;
        }
        let root = if *in_ts { "/dest/ts" } else { "/dest/pg" };
        let path = Path::new(root).join(name);
        // Not below a file or a link of its own tree.
        let blocked = path
            .ancestors()
            .skip(1)
            .any(|a| matches!(fs.nodes.get(a), Some(Node::File | Node::Link(_))));
        if blocked || fs.nodes.contains_key(&path) {
            continue;
        }
        let node = match kind {
            0 => Node::Dir,
            1 => Node::File,
            _ => Node::Link(PathBuf::from(leads_to)),
        };
        fs.add(&path, node);
    }
    fs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// For any manifest that loads and anything in the destinations (links to anywhere
    /// included), the plan either is refused or changes only places inside the destinations.
    #[test]
    fn restore_plan_never_touches_a_path_outside_its_destinations(
        entries in prop::collection::vec(entry_strategy(), 0..12),
        existing in prop::collection::vec(entry_strategy(), 0..12),
        mode in prop::sample::select(vec![0o700u32, 0o7777, 0o4755, 0o1777, 0o000]),
    ) {
        let manifest = manifest_of(&entries, mode);
        if manifest.validate().is_err() {
            // Refused when loaded: never planned.
            return Ok(());
        }
        let mut fs = model_of(&existing);
        let before_outside = fs.outside();
        let dests = BTreeMap::from([
            ("pg_data".to_string(), PathBuf::from("/dest/pg")),
            ("pg_tblspc/16400".to_string(), PathBuf::from("/dest/ts")),
        ]);
        let found = same_cluster(&["pg_data", "pg_tblspc/16400"]);
        let Ok(plan) = Plan::new(&manifest, &dests, &found, &fs) else {
            return Ok(());
        };
        for place in carry_out(&plan, &manifest, &mut fs) {
            prop_assert!(
                place.starts_with("/dest/pg") || place.starts_with("/dest/ts"),
                "the plan changed {} outside the destinations: {:?}", place.display(), plan
            );
        }
        prop_assert_eq!(before_outside, fs.outside());
        for (_, m) in &plan.directories {
            prop_assert_eq!(m & !0o750, 0);
        }
    }
}
