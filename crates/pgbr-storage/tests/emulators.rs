//! The cloud storages against real emulators on loopback: S3 (moto server), Azure Blob
//! (Azurite) and GCS (fake-gcs-server). Each test starts its emulator on a free port and
//! kills it at the end, also when the test fails. A missing emulator fails the test: run
//! `.ci/run` (or its install lines) first.

#[allow(dead_code)]
#[path = "support/contract.rs"]
mod contract;
#[path = "support/emulator.rs"]
mod emulator;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgbr_storage::{
    AzureKeyType, AzureOptions, Error, FaultyHttpConnector, FaultyStore, GcsKeyType, GcsOptions,
    RequestKind, S3Options, Storage, UriStyle,
};

use contract::{assert_seeded, b, exercise, list_paths, pattern, streamed, SEEDED};
use emulator::{start_azurite, start_fake_gcs, start_moto, Emulator, AZURITE_ACCOUNT, AZURITE_KEY};

const SECRET: &str = "pgbrSuperSecretValue0123456789abcdefXYZ";
const PART: usize = 5 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// What every object store must do besides `contract::exercise`

/// A 20 MiB object streamed with 5 MiB parts goes multipart, appears only when finished;
/// an aborted (or dropped) upload leaves nothing visible and the previous object intact.
async fn multipart(s: &Storage) {
    let s = s.clone().with_part_size(PART).with_upload_concurrency(2);
    let data = pattern(20 * 1024 * 1024 + 123);
    let mut w = s.writer("big/object");
    for chunk in data.chunks(1024 * 1024) {
        w.write(chunk).await.unwrap();
    }
    assert!(format!("{w:?}").contains("multipart"), "{w:?}");
    assert!(!s.exists("big/object").await.unwrap());
    assert_eq!(w.finish().await.unwrap(), data.len() as u64);
    let back = s.get("big/object").await.unwrap();
    assert!(back == data, "20 MiB object differs");
    assert_eq!(
        s.get_range("big/object", 7 * 1024 * 1024..7 * 1024 * 1024 + 10)
            .await
            .unwrap(),
        data[7 * 1024 * 1024..7 * 1024 * 1024 + 10]
    );

    // Overwrite aborted after going multipart: the old object is untouched.
    let mut w = s.writer("big/object");
    w.write(&data[..PART + 1]).await.unwrap();
    assert!(format!("{w:?}").contains("multipart"));
    w.abort().await.unwrap();
    assert_eq!(
        s.head("big/object").await.unwrap().unwrap().size,
        data.len() as u64
    );
    // A new object aborted, and one dropped: nothing visible.
    let mut w = s.writer("big/aborted");
    w.write(&data[..2 * PART + 1]).await.unwrap();
    w.abort().await.unwrap();
    let mut w = s.writer("big/dropped");
    w.write(&data[..PART + 1]).await.unwrap();
    drop(w);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listed = s.list("big").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(s.delete_prefix("big").await.unwrap(), 1);
}

/// A failing request's error names the path and never carries `secret`.
async fn error_hides(s: &Storage, secret: &str) -> String {
    let err = s.get("some/key").await.unwrap_err();
    let text = format!("{err} / {err:?}");
    assert!(text.contains("some/key"), "{text}");
    assert!(!text.contains(secret), "secret in error: {text}");
    assert!(!format!("{s:?}").contains(secret));
    text
}

// ---------------------------------------------------------------------------------------
// S3 (moto)

fn s3_options(emu: &Emulator, bucket: &str, prefix: &str) -> S3Options {
    S3Options {
        bucket: bucket.into(),
        endpoint: Some(emu.url()),
        region: "us-east-1".into(),
        key: Some("AKIAIOSFODNN7EXAMPLE".into()),
        key_secret: Some(SECRET.into()),
        token: None,
        uri_style: UriStyle::Path,
        verify_tls: true,
        ca_file: None,
        prefix: prefix.into(),
    }
}

/// Multipart uploads still in progress in `bucket` (moto answers without authentication).
fn s3_open_uploads(emu: &Emulator, bucket: &str) -> usize {
    let (status, body) = emu.http("GET", &format!("/{bucket}?uploads"), &[], b"");
    assert_eq!(status, 200, "{body}");
    body.matches("<Upload>").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto() {
    let emu = start_moto("pgbr-test");

    let s = Storage::s3(&s3_options(&emu, "pgbr-test", "/pgbr")).unwrap();
    assert_eq!(s.description(), "s3:pgbr-test/pgbr");
    exercise(&s).await;

    // The prefix is the repository root inside the bucket.
    let root = Storage::s3(&s3_options(&emu, "pgbr-test", "/")).unwrap();
    s.put("a/b", b("x")).await.unwrap();
    assert_eq!(list_paths(&root, "").await, ["pgbr/a/b"]);
    s.delete("a/b").await.unwrap();

    multipart(&s).await;
    assert_eq!(
        s3_open_uploads(&emu, "pgbr-test"),
        0,
        "aborted uploads left parts"
    );

    // Secrets stay out of errors (missing bucket: a real failing request).
    let text = error_hides(
        &Storage::s3(&s3_options(&emu, "no-such-bucket", "/")).unwrap(),
        SECRET,
    )
    .await;
    assert!(
        text.contains("no-such-bucket") || text.contains("NoSuchBucket"),
        "{text}"
    );

    // Transient faults under object_store's retry layer: the first 2 requests of every
    // HTTP method get a 503, and everything still works.
    let faulty = FaultyHttpConnector::new().fail_first(2);
    let fs =
        Storage::s3_with_http_connector(&s3_options(&emu, "pgbr-test", "/retried"), faulty.clone())
            .unwrap();
    exercise(&fs).await;
    faulty.set_fail_first(1);
    let mut w = fs.clone().with_part_size(PART).writer("mp");
    w.write(&pattern(PART + 10)).await.unwrap();
    assert_eq!(w.finish().await.unwrap(), PART as u64 + 10);
    assert!(
        faulty.injected_failures() >= 10,
        "{}",
        faulty.injected_failures()
    );
    assert_eq!(fs.get("mp").await.unwrap().len(), PART + 10);
    fs.delete("mp").await.unwrap();

    // A fault that outlasts the retries: a clear error naming the path and the retries.
    faulty.set_fail_first(u64::MAX);
    let before = faulty.requests();
    let start = Instant::now();
    let err = fs.put("perm/object", b("x")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("perm/object"), "{text}");
    assert!(text.contains("503") && text.contains("retries"), "{text}");
    assert_eq!(
        faulty.requests() - before,
        1 + pgbr_storage::MAX_RETRIES as u64
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    faulty.set_fail_first(0);
    assert!(!fs.exists("perm/object").await.unwrap());

    // FaultyStore outside the retry layer: an injected fault is our error, naming the path.
    let inner = Storage::s3(&s3_options(&emu, "pgbr-test", "/faulty")).unwrap();
    let store =
        Arc::new(FaultyStore::new(inner.object_store().clone()).fail_first(RequestKind::Put, 1));
    let fst = Storage::from_object_store(store.clone(), "faulty-s3".into());
    let err = fst.put("f/one", b("1")).await.unwrap_err();
    assert!(
        err.to_string().contains("f/one") && err.to_string().contains("injected fault"),
        "{err}"
    );
    fst.put("f/one", b("1")).await.unwrap();
    assert_eq!(inner.get("f/one").await.unwrap(), b("1"));
    // A failed part of a multipart upload: nothing visible, no parts left.
    store.set_fail_nth(
        RequestKind::Multipart,
        store.requests(RequestKind::Multipart) + 3,
    );
    let mut w = fst
        .clone()
        .with_part_size(PART)
        .with_upload_concurrency(1)
        .writer("f/big");
    let mut failed = false;
    for c in pattern(4 * PART).chunks(1024 * 1024) {
        if let Err(e) = w.write(c).await {
            assert!(e.to_string().contains("f/big"), "{e}");
            failed = true;
            break;
        }
    }
    let finished = w.finish().await;
    assert!(failed || finished.is_err());
    assert!(!inner.exists("f/big").await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while s3_open_uploads(&emu, "pgbr-test") != 0 {
        assert!(Instant::now() < deadline, "failed upload not aborted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(emu);
}

// ---------------------------------------------------------------------------------------
// Azure Blob (Azurite)

fn azure_options(emu: &Emulator, prefix: &str) -> AzureOptions {
    AzureOptions {
        account: AZURITE_ACCOUNT.into(),
        container: "pgbr".into(),
        key: Some(AZURITE_KEY.into()),
        key_type: AzureKeyType::Shared,
        endpoint: Some(emu.url()),
        uri_style: Some(UriStyle::Path),
        verify_tls: true,
        ca_file: None,
        prefix: prefix.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_azurite() {
    let emu = start_azurite("pgbr");

    let s = Storage::azure(&azure_options(&emu, "/repo")).unwrap();
    assert_eq!(s.description(), "azure:devstoreaccount1/pgbr/repo");
    exercise(&s).await;
    let root = Storage::azure(&azure_options(&emu, "/")).unwrap();
    s.put("a/b", b("x")).await.unwrap();
    assert_eq!(list_paths(&root, "").await, ["repo/a/b"]);
    s.delete("a/b").await.unwrap();
    multipart(&s).await;

    // Retries under object_store: first request of each method answered 503.
    let faulty = FaultyHttpConnector::new().fail_first(1);
    let fs = Storage::azure_with_http_connector(&azure_options(&emu, "/retried"), faulty.clone())
        .unwrap();
    exercise(&fs).await;
    assert!(faulty.injected_failures() >= 3);

    // Wrong shared key and a bogus SAS: authentication fails, the secret stays hidden.
    let wrong_key = base64_like(SECRET);
    let bad = AzureOptions {
        key: Some(wrong_key.clone()),
        ..azure_options(&emu, "/")
    };
    let text = error_hides(&Storage::azure(&bad).unwrap(), &wrong_key).await;
    assert!(text.contains("403"), "{text}");
    let sas = format!("sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig={SECRET}");
    let bad = AzureOptions {
        key: Some(sas),
        key_type: AzureKeyType::Sas,
        ..azure_options(&emu, "/")
    };
    error_hides(&Storage::azure(&bad).unwrap(), SECRET).await;
    drop(emu);
}

/// A valid base64 key that is not Azurite's.
fn base64_like(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    while out.len() % 4 != 0 {
        out.push('A');
    }
    out
}

// ---------------------------------------------------------------------------------------
// GCS (fake-gcs-server)

fn gcs_service_file(emu: &Emulator) -> PathBuf {
    // object_store's GCS client accepts a service account file that disables OAuth
    // (no token request, no signing) for emulators.
    let path = emu.dir.path().join("service-account.json");
    let json = format!(
        r#"{{"gcs_base_url": "{}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#,
        emu.url()
    );
    std::fs::write(&path, json).unwrap();
    path
}

/// Uploads through fake-gcs-server's JSON API (its XML API has no object PUT).
fn gcs_seed(emu: &Emulator, bucket: &str, name: &str, data: &[u8]) {
    let (status, body) = emu.http(
        "POST",
        &format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(status, 200, "seed {name}: {body}");
}

/// What fake-gcs-server lets object_store's GCS client do: object_store reads, lists and
/// deletes through GCS's XML API (served when the Host is `-public-host`), but writes with
/// an XML-API `PUT /<bucket>/<object>` (and XML multipart uploads, `POST ?uploads`), which
/// this fake-gcs-server answers with 400 "invalid uploadType". Objects are therefore seeded
/// through the emulator's JSON upload API, and the write path is asserted to fail cleanly.
async fn gcs_read_side(emu: &Emulator, s: &Storage, repo: &str) {
    let seed = |k: &str, d: &[u8]| gcs_seed(emu, "pgbr-gcs", &format!("{repo}/{k}"), d);
    for (key, text) in SEEDED {
        seed(key, text.as_bytes());
    }
    let big = pattern(3 * 1024 * 1024 + 5);
    seed("big/object", &big);

    assert_seeded(s, 1, &["big"]).await;
    assert!(
        streamed(s, "big/object").await == big,
        "streamed object differs"
    );
    assert_eq!(
        s.get_range("big/object", 2_000_000..2_000_010)
            .await
            .unwrap(),
        big[2_000_000..2_000_010]
    );

    // Writes: a clear error naming the key (see above), nothing written.
    let err = s.put("backup/new", b("x")).await.unwrap_err();
    assert!(
        err.to_string().contains("backup/new") && err.to_string().contains("400"),
        "{err}"
    );
    // Create-if-absent (a repository claim) is a write too: its exclusivity
    // (`contract::create_if_absent_is_exclusive`, `x-goog-if-generation-match: 0` in object_store's GCS
    // client) cannot be checked against this emulator.
    assert!(s.put_if_absent("backup/new", b("x")).await.is_err());
    assert!(!s.exists("backup/new").await.unwrap());

    s.delete("backup/main/backup.info").await.unwrap();
    s.delete("backup/main/backup.info").await.unwrap();
    assert!(!s.exists("backup/main/backup.info").await.unwrap());
    assert_eq!(s.delete_prefix("backup/main").await.unwrap(), 2);
    assert_eq!(s.delete_prefix("backup").await.unwrap(), 1);
    assert_eq!(s.delete_prefix("big").await.unwrap(), 1);
    assert!(s.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_fake_gcs_server() {
    let emu = start_fake_gcs("pgbr-gcs");

    let service = GcsOptions {
        bucket: "pgbr-gcs".into(),
        key: Some(gcs_service_file(&emu)),
        key_type: GcsKeyType::Service,
        endpoint: Some(emu.url()),
        verify_tls: true,
        ca_file: None,
        prefix: "/repo".into(),
    };
    let s = Storage::gcs(&service).unwrap();
    assert_eq!(s.description(), "gcs:pgbr-gcs/repo");
    gcs_read_side(&emu, &s, "repo").await;

    // Token authentication: fake-gcs-server accepts any bearer token.
    let token = GcsOptions {
        key: Some(PathBuf::from(SECRET)),
        key_type: GcsKeyType::Token,
        prefix: "/token".into(),
        ..service.clone()
    };
    gcs_read_side(&emu, &Storage::gcs(&token).unwrap(), "token").await;
    let missing_bucket = GcsOptions {
        bucket: "no-such-bucket".into(),
        ..token
    };
    error_hides(&Storage::gcs(&missing_bucket).unwrap(), SECRET).await;

    // Retries under object_store: the first request of each method answered 503.
    let faulty = FaultyHttpConnector::new().fail_first(1);
    let fs = Storage::gcs_with_http_connector(
        &GcsOptions {
            prefix: "/retried".into(),
            ..service
        },
        faulty.clone(),
    )
    .unwrap();
    gcs_seed(&emu, "pgbr-gcs", "retried/a", b"abc");
    assert_eq!(fs.get("a").await.unwrap(), b("abc"));
    assert_eq!(fs.list("").await.unwrap().len(), 1);
    fs.delete("a").await.unwrap();
    assert!(
        faulty.injected_failures() >= 2,
        "{}",
        faulty.injected_failures()
    );
    drop(emu);
}
