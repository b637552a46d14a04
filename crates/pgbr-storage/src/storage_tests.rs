use super::*;
use crate::{FaultyStore, RequestKind};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use tokio::runtime::Handle;

#[allow(dead_code)]
mod contract {
    include!("../tests/support/contract.rs");
}
use contract::{exercise, list_paths, pattern};

#[tokio::test]
async fn memory_storage_operations() {
    let s = Storage::memory();
    assert_eq!(s.description(), "memory");
    exercise(&s).await;
}

#[tokio::test]
async fn local_storage_operations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let s = Storage::local(&root).unwrap();
    assert!(s.description().starts_with("posix:/"));
    exercise(&s).await;
}

async fn writer_streams_large_objects(s: Storage) {
    let s = s.with_part_size(1024 * 1024);
    let data = pattern(20 * 1024 * 1024 + 123);
    let mut w = s.writer("big/object");
    for chunk in data.chunks(100_003) {
        w.write(chunk).await.unwrap();
    }
    assert!(!s.exists("big/object").await.unwrap());
    assert!(s.list("big").await.unwrap().is_empty());
    assert_eq!(w.finish().await.unwrap(), data.len() as u64);
    assert_eq!(s.get("big/object").await.unwrap(), data);

    // Abort after going multipart: nothing visible, old object untouched.
    let mut w = s.writer("big/object");
    w.write(&data[..3 * 1024 * 1024]).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(
        s.head("big/object").await.unwrap().unwrap().size,
        data.len() as u64
    );

    let mut w = s.writer("big/aborted");
    w.write(&data[..5 * 1024 * 1024]).await.unwrap();
    w.abort().await.unwrap();
    let mut w = s.writer("big/dropped");
    w.write(&data[..5 * 1024 * 1024]).await.unwrap();
    drop(w);
    let mut w = s.writer("big/small-dropped");
    w.write(b"tiny").await.unwrap();
    drop(w);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listed = s.list("big").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");

    // Small objects are a single put.
    let mut w = s.writer("small");
    w.write(b"abc").await.unwrap();
    w.write(b"").await.unwrap();
    assert_eq!(w.finish().await.unwrap(), 3);
    assert_eq!(s.get("small").await.unwrap(), Bytes::from_static(b"abc"));
}

use std::time::Duration;

#[tokio::test]
async fn writer_streams_large_objects_memory() {
    writer_streams_large_objects(Storage::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_streams_large_objects_local() {
    let dir = tempfile::tempdir().unwrap();
    writer_streams_large_objects(Storage::local(dir.path()).unwrap()).await;
    // No staging files left behind.
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir.path().join("big")).unwrap() {
        names.push(e.unwrap().file_name().into_string().unwrap());
    }
    assert_eq!(names, ["object"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_blocking_reader_reads_files_directly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::local(dir.path()).unwrap();
    let data = pattern(3 * 1024 * 1024 + 5);
    let keys = ["d/plain.zst", "d/with space+and%percent.txt"];
    for key in keys {
        s.put(key, Bytes::from(data.clone())).await.unwrap();
    }
    // A leftover staging file of a killed upload is invisible to list (and so to verify).
    std::fs::write(dir.path().join("d/plain.zst#7"), b"partial").unwrap();
    let listed = list_paths(&s, "d/").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let handle = Handle::current();
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        for key in keys {
            let mut r = s2.blocking_reader(key, handle.clone()).unwrap();
            assert!(r.file.is_some(), "a local object is read as a file");
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{key}");
        }
        assert!(matches!(
            s2.blocking_reader("d/missing", handle),
            Err(Error::NotFound { .. })
        ));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_writer_and_reader_in_spawn_blocking() {
    let dir = tempfile::tempdir().unwrap();
    for s in [Storage::memory(), Storage::local(dir.path()).unwrap()] {
        let s = s.with_part_size(256 * 1024);
        let data = pattern(1024 * 1024 + 7);
        let handle = Handle::current();
        let (s2, d2) = (s.clone(), data.clone());
        let n = tokio::task::spawn_blocking(move || {
            let mut w = s2.blocking_writer("blk/file", handle.clone());
            for c in d2.chunks(10_000) {
                w.write_all(c).unwrap();
            }
            let n = w.finish().unwrap();

            let mut r = s2.blocking_reader("blk/file", handle.clone()).unwrap();
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, d2);

            let err = s2
                .blocking_reader("blk/missing", handle.clone())
                .unwrap_err();
            assert!(err.is_not_found() && err.to_string().contains("blk/missing"));

            let mut w = s2.blocking_writer("blk/aborted", handle);
            w.write_all(&d2).unwrap();
            w.abort().unwrap();
            n
        })
        .await
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(!s.exists("blk/aborted").await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_repository_files_are_not_world_readable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new/repo");
    // A permissive umask must not matter.
    let old = unsafe { libc::umask(0o002) };
    let s = Storage::local(&root).unwrap();
    s.put("a/b/c/file", Bytes::from_static(b"x")).await.unwrap();
    assert!(s
        .put_if_absent("a/d/file2", Bytes::from_static(b"y"))
        .await
        .unwrap());
    let s = s.with_part_size(1024);
    let mut w = s.writer("a/e/big");
    w.write(&pattern(10_000)).await.unwrap();
    w.finish().await.unwrap();
    unsafe { libc::umask(old) };

    let mode = |p: &FsPath| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o750);
    for f in ["a/b/c/file", "a/d/file2", "a/e/big"] {
        assert_eq!(mode(&root.join(f)), 0o640, "{f}");
    }
    for d in ["a", "a/b", "a/b/c", "a/d", "a/e"] {
        assert_eq!(mode(&root.join(d)) & 0o027, 0, "{d}");
    }
}

#[tokio::test]
async fn faulty_store_fails_exactly_the_nth_request() {
    let faulty = Arc::new(FaultyStore::new(InMemory::new()).fail_nth(RequestKind::Put, 2));
    let s = Storage::from_object_store(faulty.clone(), "faulty".into());
    let b = Bytes::from_static(b"data");
    s.put("p1", b.clone()).await.unwrap();
    let err = s.put("p2", b.clone()).await.unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert!(err.to_string().contains("p2"), "{err}");
    s.put("p3", b.clone()).await.unwrap();
    assert_eq!(faulty.requests(RequestKind::Put), 3);
    assert_eq!(faulty.injected_failures(), 1);
    assert!(!s.exists("p2").await.unwrap());
    assert_eq!(faulty.requests(RequestKind::Head), 1);

    faulty.set_fail_first(RequestKind::List, 1);
    assert!(s.list("").await.is_err());
    assert_eq!(s.list("").await.unwrap().len(), 2);

    faulty.set_fail_nth(RequestKind::Get, 1);
    assert!(s.get("p1").await.is_err());
    assert_eq!(s.get("p1").await.unwrap(), b);

    faulty.set_truncate_gets(Some(2));
    assert_eq!(s.get("p1").await.unwrap(), Bytes::from_static(b"da"));
    faulty.clear_faults();

    faulty.set_fail_nth(
        RequestKind::Delete,
        faulty.requests(RequestKind::Delete) + 1,
    );
    assert!(s.delete("p1").await.is_err());
    assert!(s.exists("p1").await.unwrap());
    s.delete("p1").await.unwrap();
    assert!(!s.exists("p1").await.unwrap());
}

#[tokio::test]
async fn faulty_multipart_part_failure_leaves_nothing() {
    let faulty = Arc::new(FaultyStore::new(InMemory::new()).fail_nth(RequestKind::Multipart, 3));
    let s = Storage::from_object_store(faulty.clone(), "faulty".into())
        .with_part_size(1024)
        .with_upload_concurrency(1);
    let mut w = s.writer("obj");
    let mut failed = false;
    for c in pattern(20_000).chunks(500) {
        if let Err(e) = w.write(c).await {
            assert!(e.to_string().contains("injected fault"), "{e}");
            failed = true;
            break;
        }
    }
    let finished = w.finish().await;
    assert!(failed || finished.is_err());
    assert!(!s.exists("obj").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn faulty_store_delays() {
    let faulty = FaultyStore::new(InMemory::new()).with_delay(Duration::from_secs(5));
    let s = Storage::from_object_store(Arc::new(faulty), "slow".into());
    let start = tokio::time::Instant::now();
    s.put("x", Bytes::new()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(5));
}
