//! A scripted Hugging Face hub on 127.0.0.1 for tests: the search, tree and resolve endpoints
//! with the real headers and error codes, a CDN path with `Range` support, and knobs to cut
//! connections, corrupt content or slow it down. It serves a bounded number of requests and
//! stops when dropped or after a deadline, so a failing test cannot leave it running.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A file of a mock repository.
#[derive(Debug, Clone)]
pub struct MockFile {
    pub path: String,
    pub content: Vec<u8>,
    /// LFS files are served through a redirect to the CDN path, with `X-Linked-Etag`.
    pub lfs: bool,
}

impl MockFile {
    pub fn lfs(path: &str, content: Vec<u8>) -> Self {
        MockFile {
            path: path.to_string(),
            content,
            lfs: true,
        }
    }

    pub fn small(path: &str, content: &[u8]) -> Self {
        MockFile {
            path: path.to_string(),
            content: content.to_vec(),
            lfs: false,
        }
    }

    pub fn sha256(&self) -> String {
        crate::download::hex(&Sha256::digest(&self.content))
    }

    /// Stands in for the git object id of non-LFS files: any stable 40-hex name will do.
    fn git_oid(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"blob ");
        h.update(&self.content);
        crate::download::hex(&h.finalize())[..40].to_string()
    }
}

/// A mock repository.
#[derive(Debug, Clone)]
pub struct MockRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<MockFile>,
    /// Needs `Authorization: Bearer <MockHub::TOKEN>`.
    pub gated: bool,
    pub downloads: u64,
    pub likes: u64,
}

impl MockRepo {
    pub fn new(id: &str, files: Vec<MockFile>) -> Self {
        let commit = crate::download::hex(&Sha256::digest(id.as_bytes()))[..40].to_string();
        MockRepo {
            id: id.to_string(),
            commit,
            files,
            gated: false,
            downloads: 0,
            likes: 0,
        }
    }
}

/// Misbehaviour of the CDN.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Cut this many CDN responses after `cut_after` bytes of body.
    pub cuts: usize,
    pub cut_after: usize,
    /// Files (by path) whose CDN content has one byte flipped.
    pub corrupt: Vec<String>,
    /// Ignore `Range` and always send the whole file with 200.
    pub ignore_range: bool,
    /// Pause after each 4 KiB of CDN body.
    pub chunk_delay: Option<Duration>,
    /// Tree listings are paginated with `Link` headers every this many entries.
    pub page_size: Option<usize>,
    /// Answer the first this many requests with 503, like an overloaded hub.
    pub unavailable: usize,
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

struct State {
    repos: Vec<MockRepo>,
    behaviour: Behaviour,
    cuts_left: usize,
    unavailable_left: usize,
    seen: Vec<SeenRequest>,
}

/// A running mock hub.
pub struct MockHub {
    addr: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const MAX_REQUESTS: usize = 2000;
const LIFETIME: Duration = Duration::from_secs(120);

impl MockHub {
    /// The token gated repositories accept.
    pub const TOKEN: &'static str = "hf_mock_token";

    pub fn start(repos: Vec<MockRepo>, behaviour: Behaviour) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = format!("http://{}", listener.local_addr().expect("local addr"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let cuts_left = behaviour.cuts;
        let unavailable_left = behaviour.unavailable;
        let state = Arc::new(Mutex::new(State {
            repos,
            behaviour,
            cuts_left,
            unavailable_left,
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, base) = (state.clone(), stop.clone(), addr.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let served = Arc::new(AtomicUsize::new(0));
            let mut workers = Vec::new();
            while !sp.load(Ordering::SeqCst)
                && started.elapsed() < LIFETIME
                && served.load(Ordering::SeqCst) < MAX_REQUESTS
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, base, served) = (st.clone(), base.clone(), served.clone());
                        workers.push(std::thread::spawn(move || {
                            served.fetch_add(1, Ordering::SeqCst);
                            let _ = handle(stream, &st, &base);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        MockHub {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.addr
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }

    /// Requests whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes.
    cut_at: Option<usize>,
    delay: Option<Duration>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_at: None,
            delay: None,
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn error(status: u16, code: &str) -> Self {
        Reply::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", format!("{code} (mock)"))
    }

    fn json(value: serde_json::Value) -> Self {
        let mut r = Reply::new(200).header("Content-Type", "application/json");
        r.body = value.to_string().into_bytes();
        r
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>, base: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, target) = (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let reply = {
        let mut st = state
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        st.seen.push(SeenRequest {
            method: method.clone(),
            path: target.clone(),
            range: headers.get("range").cloned(),
            authorization: headers.get("authorization").cloned(),
        });
        route(&mut st, &method, &target, &headers, base)
    };
    write_reply(stream, &method, reply)
}

fn write_reply(mut stream: TcpStream, method: &str, r: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = r.cut_at.unwrap_or(r.body.len()).min(r.body.len());
        for chunk in r.body[..end].chunks(4096) {
            stream.write_all(chunk)?;
            if let Some(d) = r.delay {
                std::thread::sleep(d);
            }
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    }
}

fn route(
    st: &mut State,
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    base: &str,
) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = decode(path);
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (decode(k), decode(v))))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if st.unavailable_left > 0 {
        st.unavailable_left -= 1;
        return Reply::new(503);
    }
    let authorized = headers
        .get("authorization")
        .is_some_and(|a| a == &format!("Bearer {}", MockHub::TOKEN));
    if path == "/api/models" {
        return search(
            st,
            &param("search").unwrap_or_default(),
            param("limit").and_then(|l| l.parse().ok()).unwrap_or(20),
        );
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        if parts.len() >= 4 && parts[2] == "tree" {
            let repo = format!("{}/{}", parts[0], parts[1]);
            let cursor = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
            return tree(st, &repo, parts[3], cursor, base, authorized);
        }
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        return cdn(st, sha, headers.get("range"));
    }
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if method != "GET" && method != "HEAD" || parts.len() < 5 || parts[2] != "resolve" {
        return Reply::new(404);
    }
    resolve(
        st,
        &format!("{}/{}", parts[0], parts[1]),
        parts[3],
        parts[4],
        base,
        authorized,
    )
}

fn find_repo<'a>(
    st: &'a State,
    repo: &str,
    rev: &str,
    authorized: bool,
) -> Result<&'a MockRepo, Reply> {
    // Like the real hub: an unknown repo is 401 RepoNotFound, not 404, to hide private ones.
    let r = st
        .repos
        .iter()
        .find(|r| r.id == repo)
        .ok_or_else(|| Reply::error(401, "RepoNotFound"))?;
    if r.gated && !authorized {
        return Err(Reply::error(401, "GatedRepo"));
    }
    if rev != "main" && rev != r.commit {
        return Err(Reply::error(404, "RevisionNotFound"));
    }
    Ok(r)
}

fn search(st: &State, query: &str, limit: usize) -> Reply {
    let mut found: Vec<&MockRepo> = st
        .repos
        .iter()
        .filter(|r| r.id.to_lowercase().contains(&query.to_lowercase()))
        .collect();
    found.sort_by_key(|r| std::cmp::Reverse(r.downloads));
    let items: Vec<serde_json::Value> = found
        .iter()
        .take(limit)
        .map(|r| {
            serde_json::json!({"_id": "x", "id": r.id, "downloads": r.downloads, "likes": r.likes,
                               "lastModified": "2024-11-03T10:20:30.000Z", "private": false})
        })
        .collect();
    Reply::json(serde_json::Value::Array(items))
}

fn tree(st: &State, repo: &str, rev: &str, cursor: usize, base: &str, authorized: bool) -> Reply {
    let r = match find_repo(st, repo, rev, authorized) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for f in &r.files {
        if let Some((d, _)) = f.path.rsplit_once('/') {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_string());
                entries.push(
                    serde_json::json!({"type": "directory", "oid": "0", "size": 0, "path": d}),
                );
            }
        }
        let mut e = serde_json::json!({"type": "file", "oid": f.git_oid(), "size": f.content.len(), "path": f.path});
        if f.lfs {
            e["size"] = serde_json::json!(f.content.len());
            e["lfs"] =
                serde_json::json!({"oid": f.sha256(), "size": f.content.len(), "pointerSize": 134});
        }
        entries.push(e);
    }
    let page = st.behaviour.page_size.unwrap_or(usize::MAX);
    let end = cursor.saturating_add(page).min(entries.len());
    let mut reply = Reply::json(serde_json::Value::Array(
        entries[cursor.min(end)..end].to_vec(),
    ));
    if end < entries.len() {
        let next = format!(
            "<{base}/api/models/{repo}/tree/{rev}?recursive=true&cursor={end}>; rel=\"next\""
        );
        reply = reply.header("Link", next);
    }
    reply
}

fn resolve(st: &State, repo: &str, rev: &str, file: &str, base: &str, authorized: bool) -> Reply {
    let r = match find_repo(st, repo, rev, authorized) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some(f) = r.files.iter().find(|f| f.path == file) else {
        return Reply::error(404, "EntryNotFound").header("X-Repo-Commit", r.commit.clone());
    };
    let common = |reply: Reply| {
        reply
            .header("X-Repo-Commit", r.commit.clone())
            .header("ETag", format!("\"{}\"", f.git_oid()))
    };
    if f.lfs {
        common(Reply::new(302))
            // Another origin (still loopback), like the real CDN: clients must not send the
            // token there, nor take it for a hub redirect.
            .header(
                "Location",
                format!(
                    "{}/cdn/{}?expires=1",
                    base.replace("127.0.0.1", "localhost"),
                    f.sha256()
                ),
            )
            .header("X-Linked-Etag", format!("\"{}\"", f.sha256()))
            .header("X-Linked-Size", f.content.len().to_string())
    } else {
        let mut reply = common(Reply::new(200));
        reply.body = f.content.clone();
        reply
    }
}

fn cdn(st: &mut State, sha: &str, range: Option<&String>) -> Reply {
    let Some(f) = st
        .repos
        .iter()
        .flat_map(|r| r.files.iter())
        .find(|f| f.lfs && f.sha256() == sha)
        .cloned()
    else {
        return Reply::new(404);
    };
    let mut content = f.content.clone();
    if st.behaviour.corrupt.contains(&f.path) && !content.is_empty() {
        let mid = content.len() / 2;
        content[mid] ^= 0xff;
    }
    let total = content.len();
    let start = range
        .filter(|_| !st.behaviour.ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let mut reply = match start {
        Some(s) if s >= total => {
            return Reply::new(416).header("Content-Range", format!("bytes */{total}"))
        }
        Some(s) => {
            let mut r =
                Reply::new(206).header("Content-Range", format!("bytes {s}-{}/{total}", total - 1));
            r.body = content[s..].to_vec();
            r
        }
        None => {
            let mut r = Reply::new(200);
            r.body = content;
            r
        }
    };
    reply = reply
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream");
    if st.cuts_left > 0 {
        st.cuts_left -= 1;
        reply.cut_at = Some(st.behaviour.cut_after);
    }
    reply.delay = st.behaviour.chunk_delay;
    reply
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A temporary folder removed on drop (tests only; avoids a dependency for this).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("torchless-{tag}-{}-{n}-{t}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Hex sha256 of `data`.
pub fn content_sha256(data: &[u8]) -> String {
    crate::download::hex(&Sha256::digest(data))
}

/// `n` bytes of deterministic, non-repeating-looking content.
pub fn content(n: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ seed as u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
