//! [`FaultyStore`]: an object store wrapper that injects faults, for tests.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    ReqwestConnector,
};
use object_store::path::Path;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result, UploadPart,
};

/// The kinds of request [`FaultyStore`] counts and can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Reads (`get_opts` without `head`, `get_ranges`).
    Get,
    /// Single-request writes (`put_opts`, `copy_opts`, `rename_opts`).
    Put,
    /// Listings (`list`, `list_with_offset`, `list_with_delimiter`).
    List,
    /// Deletes (one per location of `delete_stream`).
    Delete,
    /// Metadata reads (`get_opts` with `head`).
    Head,
    /// Multipart uploads: creating one, each part, and completing it (aborts are never
    /// failed).
    Multipart,
}

impl RequestKind {
    const ALL: [RequestKind; 6] = [
        RequestKind::Get,
        RequestKind::Put,
        RequestKind::List,
        RequestKind::Delete,
        RequestKind::Head,
        RequestKind::Multipart,
    ];

    fn index(self) -> usize {
        match self {
            RequestKind::Get => 0,
            RequestKind::Put => 1,
            RequestKind::List => 2,
            RequestKind::Delete => 3,
            RequestKind::Head => 4,
            RequestKind::Multipart => 5,
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RequestKind::Get => "get",
            RequestKind::Put => "put",
            RequestKind::List => "list",
            RequestKind::Delete => "delete",
            RequestKind::Head => "head",
            RequestKind::Multipart => "multipart",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Fail request number `n` (1-based) of a kind.
    Nth(RequestKind, u64),
    /// Fail the first `k` requests of a kind.
    First(RequestKind, u64),
}

#[derive(Debug, Default)]
struct Config {
    rules: Vec<Rule>,
    truncate_get: Option<u64>,
    delay: Duration,
}

#[derive(Debug, Default)]
struct State {
    counters: [AtomicU64; 6],
    injected: AtomicU64,
    config: Mutex<Config>,
}

impl State {
    fn config<T>(&self, f: impl FnOnce(&mut Config) -> T) -> T {
        let mut guard = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Counts a request; returns the injected error if it must fail.
    fn check(&self, kind: RequestKind, location: &str) -> Result<()> {
        let n = self.counters[kind.index()].fetch_add(1, Ordering::SeqCst) + 1;
        let fail = self.config(|c| {
            c.rules.iter().any(|r| match *r {
                Rule::Nth(k, nth) => k == kind && nth == n,
                Rule::First(k, first) => k == kind && n <= first,
            })
        });
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Err(injected(kind, n, location))
        } else {
            Ok(())
        }
    }

    fn delay(&self) -> Duration {
        self.config(|c| c.delay)
    }

    fn truncate_get(&self) -> Option<u64> {
        self.config(|c| c.truncate_get)
    }
}

fn injected(kind: RequestKind, n: u64, location: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {kind} request #{n} on '{location}'").into(),
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// An [`ObjectStore`] that forwards to `inner` and injects faults (in the shape of
/// `object_store`'s `ThrottledStore`/`LimitStore`).
///
/// Configure it builder-style ([`FaultyStore::fail_nth`], [`FaultyStore::fail_first`],
/// [`FaultyStore::truncate_gets`], [`FaultyStore::with_delay`]); the same settings can be
/// changed later through `&self` (`set_*`), for example via an `Arc` kept next to the
/// [`Storage`](crate::Storage) using it. Counters ([`FaultyStore::requests`]) count every
/// request of a kind, failed or not. Injected failures are `object_store::Error::Generic`
/// whose message starts with "injected fault".
#[derive(Debug)]
pub struct FaultyStore<S: ObjectStore> {
    inner: Arc<S>,
    state: Arc<State>,
}

impl<S: ObjectStore> fmt::Display for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl<S: ObjectStore> FaultyStore<S> {
    /// Wraps `inner`, injecting nothing yet.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner: Arc::new(inner),
            state: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Fails request number `n` (1-based, counted since creation or the last
    /// [`FaultyStore::reset_counters`]) of `kind`.
    pub fn fail_nth(self, kind: RequestKind, n: u64) -> Self {
        self.set_fail_nth(kind, n);
        self
    }

    /// Fails the first `k` requests of `kind`.
    pub fn fail_first(self, kind: RequestKind, k: u64) -> Self {
        self.set_fail_first(kind, k);
        self
    }

    /// Cuts every get's body after `n` bytes (the stream ends early, without error).
    pub fn truncate_gets(self, n: u64) -> Self {
        self.set_truncate_gets(Some(n));
        self
    }

    /// Delays every request by `delay`.
    pub fn with_delay(self, delay: Duration) -> Self {
        self.set_delay(delay);
        self
    }

    /// Like [`FaultyStore::fail_nth`], through a shared reference.
    pub fn set_fail_nth(&self, kind: RequestKind, n: u64) {
        self.state.config(|c| c.rules.push(Rule::Nth(kind, n)));
    }

    /// Like [`FaultyStore::fail_first`], through a shared reference.
    pub fn set_fail_first(&self, kind: RequestKind, k: u64) {
        self.state.config(|c| c.rules.push(Rule::First(kind, k)));
    }

    /// Sets (or with `None` removes) get truncation.
    pub fn set_truncate_gets(&self, n: Option<u64>) {
        self.state.config(|c| c.truncate_get = n);
    }

    /// Sets the delay of every request.
    pub fn set_delay(&self, delay: Duration) {
        self.state.config(|c| c.delay = delay);
    }

    /// Removes every failure rule, truncation and delay.
    pub fn clear_faults(&self) {
        self.state.config(|c| *c = Config::default());
    }

    /// Requests of `kind` seen so far.
    pub fn requests(&self, kind: RequestKind) -> u64 {
        self.state.counters[kind.index()].load(Ordering::SeqCst)
    }

    /// Failures injected so far.
    pub fn injected_failures(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Sets every request counter (and the injected failure count) back to zero.
    pub fn reset_counters(&self) {
        for kind in RequestKind::ALL {
            self.state.counters[kind.index()].store(0, Ordering::SeqCst);
        }
        self.state.injected.store(0, Ordering::SeqCst);
    }

    async fn before(&self, kind: RequestKind, location: &Path) -> Result<()> {
        sleep(self.state.delay()).await;
        self.state.check(kind, location.as_ref())
    }
}

fn truncate_stream(
    s: BoxStream<'static, Result<Bytes>>,
    limit: u64,
) -> BoxStream<'static, Result<Bytes>> {
    s.scan(limit, |left, item| {
        let out = match item {
            Ok(mut b) => {
                if *left == 0 {
                    return futures::future::ready(None);
                }
                let keep = usize::try_from(*left).unwrap_or(usize::MAX).min(b.len());
                b.truncate(keep);
                *left -= keep as u64;
                Some(Ok(b))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
    .boxed()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.before(RequestKind::Put, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.before(RequestKind::Multipart, location).await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            upload,
            state: Arc::clone(&self.state),
            location: location.to_string(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head {
            RequestKind::Head
        } else {
            RequestKind::Get
        };
        self.before(kind, location).await?;
        let result = self.inner.get_opts(location, options).await?;
        match (kind, self.state.truncate_get()) {
            (RequestKind::Get, Some(limit)) => {
                let meta = result.meta.clone();
                let range = result.range.clone();
                let attributes = result.attributes.clone();
                let extensions = result.extensions.clone();
                let payload = truncate_stream(result.into_stream(), limit);
                Ok(GetResult {
                    payload: GetResultPayload::Stream(payload),
                    meta,
                    range,
                    attributes,
                    extensions,
                })
            }
            _ => Ok(result),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.before(RequestKind::Get, location).await?;
        let mut out = self.inner.get_ranges(location, ranges).await?;
        if let Some(limit) = self.state.truncate_get() {
            for b in &mut out {
                b.truncate(usize::try_from(limit).unwrap_or(usize::MAX).min(b.len()));
            }
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        locations
            .then(move |loc| {
                let inner = Arc::clone(&inner);
                let state = Arc::clone(&state);
                async move {
                    let loc = match loc {
                        Ok(l) => l,
                        Err(e) => return stream::once(futures::future::ready(Err(e))).boxed(),
                    };
                    sleep(state.delay()).await;
                    if let Err(e) = state.check(RequestKind::Delete, loc.as_ref()) {
                        return stream::once(futures::future::ready(Err(e))).boxed();
                    }
                    inner.delete_stream(stream::once(futures::future::ready(Ok(loc))).boxed())
                }
            })
            .flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.list(prefix);
        list_faulty(Arc::clone(&self.state), prefix, inner)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.list_with_offset(prefix, offset);
        list_faulty(Arc::clone(&self.state), prefix, inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let root = Path::default();
        self.before(RequestKind::List, prefix.unwrap_or(&root))
            .await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.before(RequestKind::Put, to).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.before(RequestKind::Put, to).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

fn list_faulty(
    state: Arc<State>,
    prefix: Option<&Path>,
    inner: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let location = prefix.map(|p| p.to_string()).unwrap_or_default();
    stream::once(async move {
        sleep(state.delay()).await;
        match state.check(RequestKind::List, &location) {
            Ok(()) => inner,
            Err(e) => stream::once(futures::future::ready(Err(e))).boxed(),
        }
    })
    .flatten()
    .boxed()
}

#[derive(Debug)]
struct FaultyUpload {
    upload: Box<dyn MultipartUpload>,
    state: Arc<State>,
    location: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let state = Arc::clone(&self.state);
        let location = self.location.clone();
        let fail = state.check(RequestKind::Multipart, &location);
        let put = self.upload.put_part(data);
        Box::pin(async move {
            sleep(state.delay()).await;
            fail?;
            put.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        sleep(self.state.delay()).await;
        self.state.check(RequestKind::Multipart, &self.location)?;
        self.upload.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

/// An [`HttpConnector`] for the cloud storages that injects HTTP faults *under*
/// `object_store`'s retry layer (see [`Storage::s3_with_http_connector`]), for tests.
///
/// The first `k` requests of each HTTP method (`GET`, `PUT`, `POST`, `DELETE`, `HEAD`, ...)
/// get an injected `503 Service Unavailable` response without reaching the server; later
/// requests go to the real client (`object_store`'s reqwest client, built with the storage's
/// client options). A transient fault therefore shows up as a retry, and a fault that
/// outlasts the retries ([`FaultyHttpConnector::fail_first`] with `u64::MAX`, or
/// [`FaultyHttpConnector::fail_after`]: every request of one method after the first `n`) as
/// the storage's error. Clones share their counters and settings.
///
/// [`Storage::s3_with_http_connector`]: crate::Storage::s3_with_http_connector
#[derive(Clone, Debug, Default)]
pub struct FaultyHttpConnector {
    state: Arc<HttpFaultState>,
}

#[derive(Debug, Default)]
struct HttpFaultState {
    fail_first: AtomicU64,
    /// `(method, n)`: every request of `method` after its `n`th fails.
    fail_after: Mutex<Option<(String, u64)>>,
    requests: AtomicU64,
    injected: AtomicU64,
    per_method: Mutex<Vec<(String, u64)>>,
}

impl FaultyHttpConnector {
    /// A connector injecting nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the first `k` requests of each HTTP method with a 503.
    pub fn fail_first(self, k: u64) -> Self {
        self.set_fail_first(k);
        self
    }

    /// Like [`FaultyHttpConnector::fail_first`], through a shared reference; the per-method
    /// counts start again from zero.
    pub fn set_fail_first(&self, k: u64) {
        let mut counts = self
            .state
            .per_method
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.clear();
        self.state.fail_first.store(k, Ordering::SeqCst);
    }

    /// Fails every request of HTTP `method` (`"PUT"`, ...) after the first `n` of that method
    /// with a 503 (retries included in the count): a permanent fault, which exhausts the
    /// storage's retries, starting part-way through the work.
    pub fn fail_after(self, method: &str, n: u64) -> Self {
        self.set_fail_after(Some((method, n)));
        self
    }

    /// Like [`FaultyHttpConnector::fail_after`], through a shared reference; `None` removes it.
    pub fn set_fail_after(&self, rule: Option<(&str, u64)>) {
        *self
            .state
            .fail_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            rule.map(|(m, n)| (m.to_ascii_uppercase(), n));
    }

    /// HTTP requests seen (failed or not).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with an injected 503.
    pub fn injected_failures(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }
}

impl HttpConnector for FaultyHttpConnector {
    fn connect(&self, options: &ClientOptions) -> Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(FaultyHttpService {
            inner,
            state: Arc::clone(&self.state),
        }))
    }
}

#[derive(Debug)]
struct FaultyHttpService {
    inner: HttpClient,
    state: Arc<HttpFaultState>,
}

#[async_trait]
impl HttpService for FaultyHttpService {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        self.state.requests.fetch_add(1, Ordering::SeqCst);
        let method = req.method().as_str().to_string();
        let n = {
            let mut counts = self
                .state
                .per_method
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match counts.iter_mut().find(|(m, _)| *m == method) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((method.clone(), 1));
                    1
                }
            }
        };
        let after = self
            .state
            .fail_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(m, after)| *m == method && n > *after);
        if after || n <= self.state.fail_first.load(Ordering::SeqCst) {
            self.state.injected.fetch_add(1, Ordering::SeqCst);
            let mut res = HttpResponse::new(HttpResponseBody::from(format!(
                "injected fault: {method} request #{n}"
            )));
            *res.status_mut() = 503u16.try_into().expect("503 is a status code");
            return Ok(res);
        }
        self.inner.execute(req).await
    }
}
