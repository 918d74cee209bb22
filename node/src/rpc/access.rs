//! Who may call the RPC, decided before jsonrpsee reads a request, and how fast.
//!
//! A web page the operator visits can make the browser send requests to the node, so the
//! listening address alone is no protection:
//! - `Host` must name loopback (`localhost`, `127.x.x.x`, `[::1]`, any port) or a name given with
//!   `--rpc-allow-host`. A page that rebinds its own name to 127.0.0.1 (DNS rebinding) still
//!   sends its own name, and is refused.
//! - `Origin`, sent by browsers only, must be one given with `--rpc-allow-origin` (none by
//!   default); a request without it (curl, the wallet, the harness) passes.
//! - Admin methods also need `Authorization: Bearer TOKEN` with the [`AdminToken`] the node
//!   writes, mode 0600, to `DATA_DIR/rpc-admin.token` at each start. A page can set neither
//!   that header on a WebSocket nor read the file.
//!
//! Refusals of the first two are HTTP 403 answers ([`Refusal`]); the admin check is the
//! methods' own (error 4003), so it holds in batches and on WebSocket connections too.
//!
//! A page of an allowed origin gets the CORS answers a browser needs to read what it asked
//! for over HTTP ([`preflight`], [`allow_origin`]): its origin echoed, `Vary: Origin`, and to a
//! preflight, `POST` with a `Content-Type` header (no `Authorization`: admin calls stay out of a
//! page's reach). A WebSocket needs none of them.
//!
//! The rate limit is a token bucket per client address ([`Limiter`], in IPv6 per /64), shared
//! by all of the client's connections and requests, with at most
//! `limits::RPC_CLIENTS_TRACKED_MAX` addresses kept.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use chorus_chain::limits;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    AUTHORIZATION, HOST, HeaderMap, HeaderValue, ORIGIN, VARY,
};
use jsonrpsee::server::{HttpBody, HttpResponse};

/// The file in the data directory that holds the admin token.
pub const ADMIN_TOKEN_FILE: &str = "rpc-admin.token";

/// A `Host` the server answers besides loopback's, from `--rpc-allow-host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// `*`: any host (for a node behind a proxy that checks it).
    Any,
    /// A name or address without a port, lowercase (`node.example`, `10.0.0.5`, `[fd00::1]`).
    Name(String),
}

/// A web page origin allowed to call the RPC from a browser, from `--rpc-allow-origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `*`: any page.
    Any,
    /// `scheme://host[:port]` as browsers send it, lowercase.
    Exact(String),
}

/// Why an `--rpc-allow-host` or `--rpc-allow-origin` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("host {0:?} is not a host name or address without a port (e.g. node.example, 10.0.0.5, [fd00::1]) or *")]
    Host(String),
    #[error("origin {0:?} is not scheme://host[:port] with scheme http or https and no path, nor *")]
    Origin(String),
}

impl FromStr for AllowedHost {
    type Err = AllowListError;

    fn from_str(text: &str) -> Result<AllowedHost, AllowListError> {
        if text == "*" {
            return Ok(AllowedHost::Any);
        }
        let name = text.to_ascii_lowercase();
        let bracketed = name.strip_prefix('[').and_then(|rest| rest.strip_suffix(']'));
        let valid = match bracketed {
            Some(address) => address.parse::<Ipv6Addr>().is_ok(),
            None => {
                !name.is_empty()
                    && name.len() <= 253
                    && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
            }
        };
        if valid { Ok(AllowedHost::Name(name)) } else { Err(AllowListError::Host(text.to_owned())) }
    }
}

impl FromStr for AllowedOrigin {
    type Err = AllowListError;

    fn from_str(text: &str) -> Result<AllowedOrigin, AllowListError> {
        if text == "*" {
            return Ok(AllowedOrigin::Any);
        }
        let origin = text.to_ascii_lowercase();
        let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        match authority {
            Some(authority) if split_host(authority).is_some() => Ok(AllowedOrigin::Exact(origin)),
            _ => Err(AllowListError::Origin(text.to_owned())),
        }
    }
}

/// The host part of `host[:port]` (IPv6 in brackets, kept), lowercase; None if malformed.
fn split_host(authority: &str) -> Option<String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        (&authority[..=end], &authority[end + 1..])
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        }
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|digits| digits.parse::<u16>().is_ok());
    let host_ok = !host.is_empty() && host.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'/' && byte != b'@');
    (port_ok && host_ok).then(|| host.to_ascii_lowercase())
}

/// Loopback as a `Host` names it: `localhost`, an IPv4 loopback address, `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    match host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        Some(address) => address.parse::<Ipv6Addr>().is_ok_and(|address| address.is_loopback()),
        None => host.parse::<Ipv4Addr>().is_ok_and(|address| address.is_loopback()),
    }
}

/// Why a request was refused before it reached a method: answered with HTTP 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request names no host (no Host header)")]
    NoHost,
    #[error(
        "host {host:?} is not served here: only localhost, 127.0.0.1, [::1] and hosts given with --rpc-allow-host \
         (a guard against DNS rebinding)"
    )]
    ForeignHost { host: String },
    #[error("origin {origin:?} may not call this node from a browser; allow it with --rpc-allow-origin")]
    ForeignOrigin { origin: String },
}

impl Refusal {
    /// The HTTP answer: 403 with the reason as text.
    pub fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::new(HttpBody::from(format!("{self}\n")));
        *response.status_mut() = hyper::StatusCode::FORBIDDEN;
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// The answer to a CORS preflight (`OPTIONS`) from an allowed `origin`: 204, no body.
pub fn preflight(origin: &HeaderValue) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::empty());
    *response.status_mut() = hyper::StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS));
    allow_origin(&mut response, origin.clone());
    response
}

/// Lets a page of the allowed `origin` read `response`.
pub fn allow_origin(response: &mut HttpResponse, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(VARY, HeaderValue::from_static("origin"));
}

/// The node's admin token: 32 random bytes, new at each start, written where only the node's
/// user can read it.
#[derive(Clone)]
pub struct AdminToken {
    hex: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    pub fn generate() -> AdminToken {
        AdminToken { hex: hex::encode(rand::random::<[u8; 32]>()) }
    }

    /// Writes the token to `path`, mode 0600, replacing the file a previous start left.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        writeln!(file, "{}", self.hex)?;
        file.sync_all()
    }

    /// Whether `Authorization` is `Bearer` with this token (compared in constant time).
    fn authorizes(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization.and_then(|value| value.to_str().ok()) else { return false };
        let Some((scheme, token)) = given.split_once(' ') else { return false };
        let (token, ours) = (token.trim().as_bytes(), self.hex.as_bytes());
        scheme.eq_ignore_ascii_case("bearer")
            && token.len() == ours.len()
            && token.iter().zip(ours).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
    }
}

/// What the HTTP layer learned about a request's caller, for the methods and the rate limit
/// (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub ip: IpAddr,
    /// It showed the admin token.
    pub admin: bool,
}

/// The `Host`, `Origin` and admin-token checks.
#[derive(Debug, Clone)]
pub struct Access {
    pub hosts: Vec<AllowedHost>,
    pub origins: Vec<AllowedOrigin>,
    pub token: AdminToken,
}

impl Access {
    /// Admits a request (an HTTP call or a WebSocket handshake) from `ip`, or says why not.
    /// `authority` is the request line's, if it has one (HTTP/2, or an absolute URI): it is
    /// checked as `Host` is.
    pub fn admit(&self, ip: IpAddr, authority: Option<&str>, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let host = headers.get(HOST).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let named: Vec<&str> = authority.into_iter().chain(host.as_deref()).collect();
        if named.is_empty() {
            return Err(Refusal::NoHost);
        }
        for host in named {
            if !self.host_allowed(host) {
                return Err(Refusal::ForeignHost { host: host.to_owned() });
            }
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            if !self.origin_allowed(&origin) {
                return Err(Refusal::ForeignOrigin { origin });
            }
        }
        Ok(Caller { ip, admin: self.token.authorizes(headers.get(AUTHORIZATION)) })
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let Some(host) = split_host(authority) else { return false };
        is_loopback_host(&host)
            || self.hosts.iter().any(|allowed| match allowed {
                AllowedHost::Any => true,
                AllowedHost::Name(name) => *name == host,
            })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        self.origins.iter().any(|allowed| match allowed {
            AllowedOrigin::Any => true,
            AllowedOrigin::Exact(exact) => *exact == origin,
        })
    }
}

/// A token bucket in thousandths of a call.
#[derive(Debug)]
struct Bucket {
    milli_tokens: u64,
    refilled: tokio::time::Instant,
}

/// Calls per second each client address may make, with bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    /// The stated limit (`limits::RPC_CALLS_PER_SEC_MAX`, `limits::RPC_CALL_BURST_MAX`).
    fn default() -> RateLimit {
        RateLimit { per_sec: limits::RPC_CALLS_PER_SEC_MAX, burst: limits::RPC_CALL_BURST_MAX }
    }
}

impl RateLimit {
    /// `per_sec` calls a second, bursts of twice that (the default's proportion).
    pub fn per_sec(per_sec: u32) -> RateLimit {
        RateLimit { per_sec, burst: per_sec.saturating_mul(2) }
    }

    fn full_milli(self) -> u64 {
        u64::from(self.burst).saturating_mul(1_000)
    }
}

impl Bucket {
    fn new(now: tokio::time::Instant, rate: RateLimit) -> Bucket {
        Bucket { milli_tokens: rate.full_milli(), refilled: now }
    }

    fn refill(&mut self, now: tokio::time::Instant, rate: RateLimit) {
        let elapsed_ms = u64::try_from(now.saturating_duration_since(self.refilled).as_millis()).unwrap_or(u64::MAX);
        // Only whole milliseconds are credited; the remainder stays for the next refill.
        self.refilled = self.refilled.checked_add(std::time::Duration::from_millis(elapsed_ms)).unwrap_or(now);
        let refill = elapsed_ms.saturating_mul(u64::from(rate.per_sec));
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(rate.full_milli());
    }

    /// Takes `calls` tokens if there are enough.
    fn take(&mut self, calls: u64) -> bool {
        let cost = calls.saturating_mul(1_000);
        if self.milli_tokens < cost {
            return false;
        }
        self.milli_tokens -= cost;
        true
    }
}

/// The rate limit: one bucket per client address, shared by all its connections.
#[derive(Debug, Default)]
pub struct Limiter {
    rate: RateLimit,
    buckets: Mutex<BTreeMap<IpAddr, Bucket>>,
}

impl Limiter {
    pub fn new(rate: RateLimit) -> Limiter {
        Limiter { rate, buckets: Mutex::default() }
    }

    pub fn rate(&self) -> RateLimit {
        self.rate
    }

    /// Takes `calls` tokens from `ip`'s bucket if it has enough.
    pub fn take(&self, ip: IpAddr, calls: u64) -> bool {
        self.take_at(ip, calls, tokio::time::Instant::now())
    }

    fn take_at(&self, ip: IpAddr, calls: u64, now: tokio::time::Instant) -> bool {
        let client = client_of(ip);
        let Ok(mut buckets) = self.buckets.lock() else { return false };
        if !buckets.contains_key(&client) && buckets.len() >= limits::RPC_CLIENTS_TRACKED_MAX as usize {
            make_room(&mut buckets, now, self.rate);
        }
        let bucket = buckets.entry(client).or_insert_with(|| Bucket::new(now, self.rate));
        bucket.refill(now, self.rate);
        bucket.take(calls)
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().map(|buckets| buckets.len()).unwrap_or(0)
    }
}

/// Drops the buckets that refilled to the burst (a new bucket is the same), or else the fullest.
fn make_room(buckets: &mut BTreeMap<IpAddr, Bucket>, now: tokio::time::Instant, rate: RateLimit) {
    buckets.retain(|_, bucket| {
        bucket.refill(now, rate);
        bucket.milli_tokens < rate.full_milli()
    });
    if buckets.len() >= limits::RPC_CLIENTS_TRACKED_MAX as usize
        && let Some(fullest) = buckets.iter().max_by_key(|(_, bucket)| bucket.milli_tokens).map(|(client, _)| *client)
    {
        buckets.remove(&fullest);
    }
}

/// The address a bucket is kept for: an IPv4 address, or an IPv6 address's /64 (one host's
/// usual share, which it could otherwise spread its calls over).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(hosts: &[&str], origins: &[&str]) -> Access {
        Access {
            hosts: hosts.iter().map(|host| host.parse().expect("host")).collect(),
            origins: origins.iter().map(|origin| origin.parse().expect("origin")).collect(),
            token: AdminToken::generate(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn loopback_and_allowed_hosts_pass_and_others_are_refused() {
        let access = access(&["Node.Example"], &[]);
        for host in
            ["localhost", "localhost:8545", "127.0.0.1:1", "127.8.9.10", "[::1]", "[::1]:8545", "node.example:80"]
        {
            assert!(access.admit(LOCAL, None, &headers(&[("host", host)])).is_ok(), "{host}");
        }
        for host in ["rebind.attacker.example", "localhost.attacker.example:8545", "10.0.0.5:8545", "[::2]", "", "a b"]
        {
            let refusal = access.admit(LOCAL, None, &headers(&[("host", host)])).expect_err(host);
            assert_eq!(refusal, Refusal::ForeignHost { host: host.to_owned() });
        }
        assert_eq!(access.admit(LOCAL, None, &HeaderMap::new()), Err(Refusal::NoHost));
        // The request line's authority is checked too.
        let refusal = access.admit(LOCAL, Some("evil.example"), &headers(&[("host", "localhost")]));
        assert_eq!(refusal, Err(Refusal::ForeignHost { host: "evil.example".to_owned() }));
        assert!(self::access(&["*"], &[]).admit(LOCAL, None, &headers(&[("host", "anything.example")])).is_ok());
    }

    #[test]
    fn only_allowed_origins_pass_and_no_origin_passes() {
        let access = access(&[], &["http://explorer.example:8080"]);
        assert!(access.admit(LOCAL, None, &headers(&[("host", "localhost")])).is_ok());
        let allowed = headers(&[("host", "localhost"), ("origin", "http://Explorer.example:8080")]);
        assert!(access.admit(LOCAL, None, &allowed).is_ok());
        for origin in ["https://evil.example", "http://explorer.example", "null", "http://localhost:3000"] {
            let refusal = access.admit(LOCAL, None, &headers(&[("host", "localhost"), ("origin", origin)]));
            assert_eq!(refusal, Err(Refusal::ForeignOrigin { origin: origin.to_owned() }));
        }
    }

    #[test]
    fn allow_list_values_are_checked() {
        assert_eq!("*".parse(), Ok(AllowedHost::Any));
        assert_eq!("[FD00::1]".parse(), Ok(AllowedHost::Name("[fd00::1]".to_owned())));
        for bad in ["node.example:8545", "", "a/b", "[nope]", "user@host"] {
            assert_eq!(bad.parse::<AllowedHost>(), Err(AllowListError::Host(bad.to_owned())));
        }
        assert_eq!("*".parse(), Ok(AllowedOrigin::Any));
        assert_eq!("https://x.example".parse(), Ok(AllowedOrigin::Exact("https://x.example".to_owned())));
        for bad in ["x.example", "ftp://x.example", "https://x.example/page", "https://"] {
            assert_eq!(bad.parse::<AllowedOrigin>(), Err(AllowListError::Origin(bad.to_owned())));
        }
    }

    #[test]
    fn admin_needs_the_exact_token_as_a_bearer() {
        let access = access(&[], &[]);
        let admin = |authorization: &str| {
            access
                .admit(LOCAL, None, &headers(&[("host", "localhost"), ("authorization", authorization)]))
                .map(|c| c.admin)
        };
        assert_eq!(admin(&format!("Bearer {}", access.token.hex)), Ok(true));
        assert_eq!(admin(&format!("bearer {}", access.token.hex)), Ok(true));
        assert_eq!(admin(&format!("Basic {}", access.token.hex)), Ok(false));
        assert_eq!(admin(&format!("Bearer {}", AdminToken::generate().hex)), Ok(false));
        assert_eq!(admin(&format!("Bearer {}", &access.token.hex[1..])), Ok(false));
        assert_eq!(access.admit(LOCAL, None, &headers(&[("host", "localhost")])).map(|c| c.admin), Ok(false));
    }

    #[cfg(unix)]
    #[test]
    fn the_token_file_is_private_and_replaced_at_each_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        std::fs::write(&path, "stale").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let token = AdminToken::generate();
        token.write(&path).expect("write token");
        assert_eq!(std::fs::read_to_string(&path).expect("read").trim(), token.hex);
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_client_shares_one_bucket_across_calls_and_refills_at_the_rate() {
        let (limiter, start) = (Limiter::default(), tokio::time::Instant::now());
        let burst = u64::from(limits::RPC_CALL_BURST_MAX);
        assert!(limiter.take_at(LOCAL, burst, start));
        assert!(!limiter.take_at(LOCAL, 1, start), "the burst is spent");
        // Another address of the same IPv6 /64 is the same client; another IPv4 address is not.
        let v6 = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        assert!(limiter.take_at(v6(1), burst, start));
        assert!(!limiter.take_at(v6(2), 1, start));
        assert!(limiter.take_at(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1, start));
        let later = start + std::time::Duration::from_millis(500);
        let refilled = u64::from(limits::RPC_CALLS_PER_SEC_MAX) / 2;
        assert!(!limiter.take_at(LOCAL, refilled + 1, later));
        assert!(limiter.take_at(LOCAL, refilled, later));
        assert!(!limiter.take_at(LOCAL, 1, later));
    }

    #[test]
    fn the_client_table_stays_bounded_and_keeps_spent_buckets() {
        let (limiter, now) = (Limiter::default(), tokio::time::Instant::now());
        let max = limits::RPC_CLIENTS_TRACKED_MAX;
        let burst = u64::from(limits::RPC_CALL_BURST_MAX);
        assert!(limiter.take_at(LOCAL, burst, now), "the local client spends its burst");
        for n in 1..=max * 2 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            assert!(limiter.take_at(ip, 1, now));
            assert!(limiter.clients() <= max as usize);
        }
        assert!(!limiter.take_at(LOCAL, 1, now), "a spent bucket outlives crowds of fuller ones");
    }

    #[test]
    fn an_operator_sets_the_rate() {
        let (limiter, start) = (Limiter::new(RateLimit::per_sec(10)), tokio::time::Instant::now());
        assert!(limiter.take_at(LOCAL, 20, start), "bursts of twice the rate");
        assert!(!limiter.take_at(LOCAL, 1, start));
        assert!(limiter.take_at(LOCAL, 10, start + std::time::Duration::from_secs(1)));
    }
}
