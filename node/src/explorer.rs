//! The block explorer page: three static files built into the binary (`explorer/`), served on
//! their own address (`--explorer`, loopback by default), and `config.json`, which tells the
//! page where the node's RPC listens.
//!
//! The page reads the node only through the RPC's WebSocket (calls and the head and finalized
//! subscriptions), never through a CDN or any other network fetch, so it works offline. A
//! WebSocket needs no CORS answer: the RPC checks the page's `Origin` against its allowed
//! origins, to which [`page_origins`] adds this page's own. Every answer carries a content
//! security policy that allows the page's own script and style and WebSocket connections only.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};

use crate::rpc::access::AllowedOrigin;

const INDEX_HTML: &str = include_str!("explorer/index.html");
const EXPLORER_JS: &str = include_str!("explorer/explorer.js");
const EXPLORER_CSS: &str = include_str!("explorer/explorer.css");

/// Scripts and styles from the page's own origin, connections to WebSockets only, nothing
/// framed, no forms.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `--explorer`: where the page is served, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplorerAddr {
    Off,
    At(SocketAddr),
}

/// Why an `--explorer` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an address with a port (e.g. 127.0.0.1:9616) nor off")]
pub struct ExplorerAddrError(String);

impl FromStr for ExplorerAddr {
    type Err = ExplorerAddrError;

    fn from_str(text: &str) -> Result<ExplorerAddr, ExplorerAddrError> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(ExplorerAddr::Off);
        }
        text.parse().map(ExplorerAddr::At).map_err(|_| ExplorerAddrError(text.to_owned()))
    }
}

impl fmt::Display for ExplorerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplorerAddr::Off => f.write_str("off"),
            ExplorerAddr::At(addr) => addr.fmt(f),
        }
    }
}

/// The origins a browser sends for the page served on `bound`: loopback's three names for a
/// page on loopback or on every interface, the address itself otherwise. A page reached under
/// another name (a host name, a proxy) needs `--rpc-allow-origin` for it.
pub fn page_origins(bound: SocketAddr) -> Vec<AllowedOrigin> {
    let port = bound.port();
    let ip = bound.ip();
    let texts = if ip.is_loopback() || ip.is_unspecified() {
        vec![format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}"), format!("http://[::1]:{port}")]
    } else {
        match ip {
            IpAddr::V4(v4) => vec![format!("http://{v4}:{port}")],
            IpAddr::V6(v6) => vec![format!("http://[{v6}]:{port}")],
        }
    };
    texts.into_iter().map(|text| AllowedOrigin::Exact(text.to_ascii_lowercase())).collect()
}

/// What `config.json` says: the RPC's port, and its host unless it listens on every
/// interface (then the page uses the host it was loaded from).
fn config_json(rpc: SocketAddr) -> String {
    let host = match rpc.ip() {
        ip if ip.is_unspecified() => serde_json::Value::Null,
        IpAddr::V4(v4) => v4.to_string().into(),
        IpAddr::V6(v6) => format!("[{v6}]").into(),
    };
    serde_json::json!({ "rpcHost": host, "rpcPort": rpc.port() }).to_string()
}

/// Binds the page's address (before the RPC starts, which must know the page's origin).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// The answer to one request: a file, `config.json`, or a refusal.
fn answer(method: &Method, path: &str, config: &str) -> (StatusCode, &'static str, Bytes) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", Bytes::from_static(b"GET only\n"));
    }
    match path {
        "/" | "/index.html" => (StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(INDEX_HTML.as_bytes())),
        "/explorer.js" => {
            (StatusCode::OK, "text/javascript; charset=utf-8", Bytes::from_static(EXPLORER_JS.as_bytes()))
        }
        "/explorer.css" => (StatusCode::OK, "text/css; charset=utf-8", Bytes::from_static(EXPLORER_CSS.as_bytes())),
        "/config.json" => (StatusCode::OK, "application/json", Bytes::from(config.to_owned())),
        _ => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", Bytes::from_static(b"not found\n")),
    }
}

/// Serves the page from `listener` on its own task, pointing it at the RPC on `rpc`.
pub fn serve(listener: tokio::net::TcpListener, rpc: SocketAddr) {
    let config = config_json(rpc);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let config = config.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (status, content_type, body) = answer(request.method(), request.uri().path(), &config);
                    let body = if request.method() == Method::HEAD { Bytes::new() } else { body };
                    std::future::ready(
                        Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .header("content-security-policy", CONTENT_SECURITY_POLICY)
                            .header("x-content-type-options", "nosniff")
                            .header("referrer-policy", "no-referrer")
                            .header("cache-control", "no-cache")
                            .body(Full::new(body)),
                    )
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_one_or_off() {
        assert_eq!("off".parse(), Ok(ExplorerAddr::Off));
        assert_eq!("OFF".parse(), Ok(ExplorerAddr::Off));
        let at: ExplorerAddr = "127.0.0.1:9616".parse().expect("an address");
        assert_eq!(at, ExplorerAddr::At(SocketAddr::from(([127, 0, 0, 1], 9616))));
        assert_eq!(at.to_string().parse(), Ok(at));
        assert!("127.0.0.1".parse::<ExplorerAddr>().is_err(), "a port is needed");
        assert!("".parse::<ExplorerAddr>().is_err());
    }

    #[test]
    fn the_rpc_admits_the_origins_a_browser_sends_for_the_page() {
        let origins = |addr: &str| -> Vec<String> {
            page_origins(addr.parse().expect("addr"))
                .into_iter()
                .map(|origin| match origin {
                    AllowedOrigin::Exact(text) => text,
                    AllowedOrigin::Any => panic!("never any"),
                })
                .collect()
        };
        let loopback = ["http://127.0.0.1:9616", "http://localhost:9616", "http://[::1]:9616"];
        assert_eq!(origins("127.0.0.1:9616"), loopback);
        assert_eq!(origins("0.0.0.0:9616"), loopback);
        assert_eq!(origins("10.0.0.5:80"), ["http://10.0.0.5:80"]);
        assert_eq!(origins("[fd00::1]:9616"), ["http://[fd00::1]:9616"]);
    }

    #[test]
    fn the_page_learns_where_the_rpc_is_and_only_its_files_are_served() {
        assert_eq!(config_json("127.0.0.1:8545".parse().expect("addr")), r#"{"rpcHost":"127.0.0.1","rpcPort":8545}"#);
        assert_eq!(config_json("0.0.0.0:8545".parse().expect("addr")), r#"{"rpcHost":null,"rpcPort":8545}"#);
        assert_eq!(config_json("[::1]:8545".parse().expect("addr")), r#"{"rpcHost":"[::1]","rpcPort":8545}"#);
        let config = "{}";
        for path in ["/", "/index.html", "/explorer.js", "/explorer.css", "/config.json"] {
            assert_eq!(answer(&Method::GET, path, config).0, StatusCode::OK, "{path}");
        }
        assert_eq!(answer(&Method::GET, "/../Cargo.toml", config).0, StatusCode::NOT_FOUND);
        assert_eq!(answer(&Method::POST, "/", config).0, StatusCode::METHOD_NOT_ALLOWED);
        // The page loads its script and style from its own origin, nothing from elsewhere.
        assert!(INDEX_HTML.contains(r#"src="explorer.js""#) && INDEX_HTML.contains(r#"href="explorer.css""#));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!EXPLORER_JS.contains("https://") && !EXPLORER_CSS.contains("https://"));
    }
}
