// What every storage backend must do, shared by the unit tests of `Storage` (memory, local;
// `include!`d there) and the emulator tests (S3, Azure; GCS reads). It names the crate's types
// through the including module (`super`), and has no inner attributes so that it can be
// `include!`d: the including module allows dead code.

use bytes::Bytes;
use futures::StreamExt;

use super::{Error, Storage};

/// `len` bytes that are not all alike.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

pub fn b(x: &'static str) -> Bytes {
    Bytes::from_static(x.as_bytes())
}

/// The keys `list(prefix)` returns, in its order.
pub async fn list_paths(s: &Storage, prefix: &str) -> Vec<String> {
    s.list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect()
}

/// The whole object `key`, read through `get_stream`.
pub async fn streamed(s: &Storage, key: &str) -> Vec<u8> {
    let mut stream = s.get_stream(key).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    got
}

/// The four objects `exercise` starts with.
pub const SEEDED: [(&str, &str); 4] = [
    ("backup/main/backup.info", "info"),
    ("backup/main/20260101-000000F/backup.manifest", "m1"),
    ("backup/main/20260101-000000F/pg_data/base/1", "12345"),
    ("backup/mainx/other", "x"),
];

/// Reads and listings of a storage holding [`SEEDED`] and, besides, `more` objects in the
/// top-level directories that `top` lists after `backup`.
pub async fn assert_seeded(s: &Storage, more: usize, top: &[&str]) {
    assert_eq!(s.get("backup/main/backup.info").await.unwrap(), b("info"));
    let err = s.get("backup/main/missing").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("backup/main/missing"), "{err}");
    let key = "backup/main/20260101-000000F/pg_data/base/1";
    assert_eq!(s.get_range(key, 1..4).await.unwrap(), b("234"));
    assert_eq!(s.head(key).await.unwrap().unwrap().size, 5);
    assert!(s.head("backup/main/nope").await.unwrap().is_none());

    assert_eq!(
        list_paths(s, "backup/main").await,
        [
            "backup/main/20260101-000000F/backup.manifest",
            "backup/main/20260101-000000F/pg_data/base/1",
            "backup/main/backup.info",
        ]
    );
    assert_eq!(s.list("").await.unwrap().len(), SEEDED.len() + more);
    let (dirs, objs) = s.list_dir("backup/main").await.unwrap();
    assert_eq!(dirs, ["20260101-000000F"]);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].path, "backup/main/backup.info");
    let (dirs, objs) = s.list_dir("").await.unwrap();
    let mut want = vec!["backup"];
    want.extend_from_slice(top);
    assert_eq!(dirs, want);
    assert!(objs.is_empty());
}

/// Every operation on an empty storage, which is empty again at the end.
pub async fn exercise(s: &Storage) {
    for (key, text) in SEEDED {
        s.put(key, b(text)).await.unwrap();
    }
    assert_seeded(s, 0, &[]).await;

    assert!(s.get_opt("backup/main/missing").await.unwrap().is_none());
    let key = "backup/main/20260101-000000F/pg_data/base/1";
    assert!(s.get_range("nope", 0..0).await.unwrap_err().is_not_found());
    let (blocking, handle) = (s.clone(), tokio::runtime::Handle::current());
    let (part, missing, past_end) = tokio::task::spawn_blocking(move || {
        (
            blocking.get_range_blocking(key, 1..4, &handle),
            blocking.get_range_blocking("nope", 0..1, &handle),
            blocking.get_range_blocking(key, 3..9, &handle),
        )
    })
    .await
    .unwrap();
    assert_eq!(part.unwrap(), b("234"));
    assert!(missing.unwrap_err().is_not_found());
    assert!(past_end.is_err(), "a range past the end is an error");

    assert_eq!(streamed(s, key).await, b"12345");
    assert!(matches!(
        s.get_stream("nope").await.err(),
        Some(Error::NotFound { .. })
    ));

    let head = s
        .head("backup/main/backup.info")
        .await
        .unwrap()
        .expect("head");
    assert_eq!(
        (head.path.as_str(), head.size),
        ("backup/main/backup.info", 4)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (head.modified - now).abs() < 600,
        "modified {}",
        head.modified
    );
    assert!(s.exists("backup/main/backup.info").await.unwrap());
    assert!(!s.exists("backup/main").await.unwrap());

    assert!(s.list("nothing/here").await.unwrap().is_empty());
    let (dirs, objs) = s.list_dir("nothing/here").await.unwrap();
    assert!(dirs.is_empty() && objs.is_empty());

    assert!(s.put_if_absent("archive/main/seg", b("a")).await.unwrap());
    assert!(!s.put_if_absent("archive/main/seg", b("b")).await.unwrap());
    assert_eq!(s.get("archive/main/seg").await.unwrap(), b("a"));
    create_if_absent_is_exclusive(s).await;

    s.delete("backup/main/backup.info").await.unwrap();
    s.delete("backup/main/backup.info").await.unwrap();
    assert!(!s.exists("backup/main/backup.info").await.unwrap());

    assert_eq!(s.delete_prefix("backup/main").await.unwrap(), 2);
    assert!(s.list("backup/main").await.unwrap().is_empty());
    let (dirs, _) = s.list_dir("backup").await.unwrap();
    assert_eq!(dirs, ["mainx"], "emptied directories are gone");
    assert_eq!(s.delete_prefix("backup/none").await.unwrap(), 0);
    assert!(s.delete_prefix("").await.is_err());

    for bad in ["", "/abs", "a//b", "a/../b", "./a"] {
        let err = s.put(bad, b("x")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{bad}: {err}");
    }

    assert_eq!(s.delete_prefix("backup").await.unwrap(), 1);
    assert_eq!(s.delete_prefix("archive").await.unwrap(), 1);
    assert!(s.list("").await.unwrap().is_empty());
}

/// Create-if-absent under contention (what a repository claim rests on): of writers racing to
/// create one object, exactly one succeeds and the object holds its bytes; the object is gone
/// again at the end.
pub async fn create_if_absent_is_exclusive(s: &Storage) {
    const KEY: &str = "backup/race/backup.lock";
    for round in 0..3 {
        let bodies: Vec<Bytes> = (0..8)
            .map(|i| Bytes::from(format!("writer {i} of round {round}")))
            .collect();
        let created =
            futures::future::join_all(bodies.iter().map(|b| s.put_if_absent(KEY, b.clone()))).await;
        let winners: Vec<usize> = created
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.unwrap().then_some(i))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(s.get(KEY).await.unwrap(), bodies[winners[0]]);
        s.delete(KEY).await.unwrap();
    }
    assert!(!s.exists(KEY).await.unwrap());
}
