//! Admission policy for servers: which Origins may open a socket (against
//! cross-site WebSocket hijacking) and a shared-token check, both answering
//! with the HTTP status a browser or client should see (403, 401).
//!
//! ```
//! use weft::policy::OriginPolicy;
//!
//! let policy = OriginPolicy::parse(&["https://app.example.com", "*.example.org"]).unwrap();
//! assert!(policy.check(Some("https://app.example.com"), Some("api.example.com")).is_ok());
//! assert!(policy.check(Some("https://chat.example.org"), Some("x")).is_ok());
//! assert_eq!(policy.check(Some("https://evil.test"), Some("x")).unwrap_err().status(), 403);
//! ```

use weft_proto::{HandshakeError, UpgradeRequest};

/// One allowed origin.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: any origin.
    Any,
    /// An exact origin, e.g. `https://app.example.com` (scheme, host, port).
    Exact(String),
    /// `*.example.com` (any scheme) or `https://*.example.com`: the host is a
    /// subdomain of the suffix (not the bare suffix itself).
    Subdomains { scheme: Option<String>, suffix: String },
}

/// Which `Origin` headers may open a WebSocket.
///
/// Browsers always send `Origin`; other clients usually do not. A request
/// without `Origin` is not a cross-site browser request, so it is allowed
/// unless [`require_origin`](Self::require_origin) is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    patterns: Vec<Pattern>,
    same_origin: bool,
    require_origin: bool,
}

impl Default for OriginPolicy {
    /// Same-origin: a browser page may connect only to the host that served it.
    fn default() -> Self {
        OriginPolicy::same_origin()
    }
}

/// A pattern could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid origin pattern {:?}: use https://host[:port], *.domain or *",
            self.0
        )
    }
}

impl std::error::Error for PatternError {}

impl OriginPolicy {
    /// Allow an Origin whose host (and port) equals the request's `Host`.
    pub fn same_origin() -> Self {
        OriginPolicy {
            patterns: Vec::new(),
            same_origin: true,
            require_origin: false,
        }
    }

    /// Allow every Origin.
    pub fn any() -> Self {
        OriginPolicy {
            patterns: vec![Pattern::Any],
            same_origin: false,
            require_origin: false,
        }
    }

    /// Allow the listed origins (exact `scheme://host[:port]`, `*.domain`,
    /// `scheme://*.domain`, or `*`) in addition to same-origin requests.
    pub fn parse(list: &[&str]) -> Result<Self, PatternError> {
        let mut patterns = Vec::new();
        for raw in list {
            let p = raw.trim().to_ascii_lowercase();
            let p = p.trim_end_matches('/');
            let pattern = if p == "*" {
                Pattern::Any
            } else if let Some(suffix) = p.strip_prefix("*.") {
                Pattern::Subdomains {
                    scheme: None,
                    suffix: valid_host(suffix, raw)?.to_owned(),
                }
            } else if let Some((scheme, rest)) = p.split_once("://") {
                if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
                    return Err(PatternError((*raw).to_owned()));
                }
                match rest.strip_prefix("*.") {
                    Some(suffix) => Pattern::Subdomains {
                        scheme: Some(scheme.to_owned()),
                        suffix: valid_host(suffix, raw)?.to_owned(),
                    },
                    None => {
                        valid_host(rest, raw)?;
                        Pattern::Exact(p.to_owned())
                    }
                }
            } else {
                return Err(PatternError((*raw).to_owned()));
            };
            patterns.push(pattern);
        }
        Ok(OriginPolicy {
            patterns,
            same_origin: true,
            require_origin: false,
        })
    }

    /// Refuse requests that carry no `Origin` header.
    pub fn require_origin(mut self, on: bool) -> Self {
        self.require_origin = on;
        self
    }

    /// Check a request's `Origin` against the policy; `host` is its `Host`
    /// header. A refusal is 403 Forbidden.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), HandshakeError> {
        let Some(origin) = origin else {
            return if self.require_origin {
                Err(HandshakeError::reject(403, "an Origin header is required"))
            } else {
                Ok(())
            };
        };
        let origin = origin.trim().to_ascii_lowercase();
        let (scheme, origin_host) = origin.split_once("://").unwrap_or(("", origin.as_str()));
        let allowed = self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(e) => *e == origin,
            Pattern::Subdomains { scheme: s, suffix } => {
                let host = strip_port(origin_host);
                s.as_deref().is_none_or(|s| s == scheme)
                    && host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }) || (self.same_origin && host.is_some_and(|h| same_host(origin_host, scheme, h)));
        if allowed {
            Ok(())
        } else {
            Err(HandshakeError::reject(403, format!("origin {origin} is not allowed")))
        }
    }

    /// [`check`](Self::check) on an upgrade request.
    pub fn check_request(&self, req: &UpgradeRequest) -> Result<(), HandshakeError> {
        self.check(req.origin(), req.host())
    }
}

fn valid_host<'a>(h: &'a str, raw: &str) -> Result<&'a str, PatternError> {
    let ok = !h.is_empty()
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !h.starts_with('.')
        && !h.contains('*');
    if ok { Ok(h) } else { Err(PatternError(raw.to_owned())) }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Same host and port, treating a missing port as the scheme's default.
fn same_host(origin_host: &str, scheme: &str, host_header: &str) -> bool {
    let default = match scheme {
        "https" | "wss" => "443",
        _ => "80",
    };
    let norm = |h: &str| {
        let h = h.trim().to_ascii_lowercase();
        if strip_port(&h).len() == h.len() {
            format!("{h}:{default}")
        } else {
            h
        }
    };
    norm(origin_host) == norm(host_header)
}

/// Compare two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// A shared secret a client presents as `Authorization: Bearer TOKEN` or as a
/// `token=TOKEN` query parameter (browsers cannot set headers on a WebSocket).
/// A refusal is 401 Unauthorized.
#[derive(Clone)]
pub struct TokenAuth {
    token: Vec<u8>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuth(..)")
    }
}

impl TokenAuth {
    /// Require `token`.
    pub fn new(token: impl Into<Vec<u8>>) -> Self {
        TokenAuth { token: token.into() }
    }

    /// Check the request's credentials in constant time.
    pub fn check(&self, req: &UpgradeRequest) -> Result<(), HandshakeError> {
        let from_header = req
            .request()
            .headers
            .get("authorization")
            .and_then(|v| v.strip_prefix(b"Bearer ").or_else(|| v.strip_prefix(b"bearer ")))
            .map(|t| t.trim_ascii().to_vec());
        let from_query = req.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(percent_decode)
        });
        let ok = [from_header, from_query]
            .into_iter()
            .flatten()
            .any(|t| constant_time_eq(&t, &self.token));
        if ok {
            Ok(())
        } else {
            Err(HandshakeError::reject(401, "a valid token is required"))
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::{HandshakeLimits, Request};

    fn upgrade(target: &str, extra: &str) -> UpgradeRequest {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        UpgradeRequest::new(Request::parse(raw.as_bytes(), &HandshakeLimits::default()).unwrap()).unwrap()
    }

    #[test]
    fn same_origin_by_default() {
        let p = OriginPolicy::default();
        assert!(p.check(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")).is_ok());
        assert!(p.check(Some("https://example.com"), Some("example.com")).is_ok());
        assert!(p.check(Some("https://example.com:443"), Some("example.com")).is_ok());
        assert!(p.check(Some("http://example.com"), Some("example.com:8080")).is_err());
        assert!(p.check(Some("https://evil.test"), Some("example.com")).is_err());
        assert!(p.check(None, Some("example.com")).is_ok());
        assert!(p.clone().require_origin(true).check(None, Some("example.com")).is_err());
    }

    #[test]
    fn patterns() {
        let p = OriginPolicy::parse(&["https://app.example.com", "*.example.org", "http://*.test.io"]).unwrap();
        assert!(p.check(Some("https://app.example.com"), None).is_ok());
        assert!(p.check(Some("http://app.example.com"), None).is_err());
        assert!(p.check(Some("https://a.b.example.org:8443"), None).is_ok());
        assert!(p.check(Some("https://example.org"), None).is_err());
        assert!(p.check(Some("https://badexample.org"), None).is_err());
        assert!(p.check(Some("http://x.test.io"), None).is_ok());
        assert!(p.check(Some("https://x.test.io"), None).is_err());
        assert!(OriginPolicy::any().check(Some("null"), None).is_ok());
        for bad in ["example.com", "https://", "*.", "ht tp://x", "https://*"] {
            assert!(OriginPolicy::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_in_header_or_query() {
        let auth = TokenAuth::new("s3cr3t token");
        assert!(
            auth.check(&upgrade("/echo", "Authorization: Bearer s3cr3t token\r\n"))
                .is_ok()
        );
        assert!(auth.check(&upgrade("/echo?x=1&token=s3cr3t%20token", "")).is_ok());
        assert!(auth.check(&upgrade("/echo?token=s3cr3t+token", "")).is_ok());
        assert_eq!(auth.check(&upgrade("/echo?token=wrong", "")).unwrap_err().status(), 401);
        assert_eq!(auth.check(&upgrade("/echo", "")).unwrap_err().status(), 401);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
