//! The client's address, decided once per request and used by both the rate limiter and
//! the request log, so they always name the same client.
use std::net::IpAddr;

use actix_web::{HttpMessage, HttpRequest};

/// The client address of a request, stored in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The entry `depth` proxies from the right of X-Forwarded-For (entries further left
    /// can be forged by the client); anything that is not an IP address, or too few
    /// entries, falls back to the peer address.
    pub fn resolve(req: &HttpRequest, depth: usize) -> ClientIp {
        let peer = req.peer_addr().map(|a| a.ip());
        if depth == 0 {
            return ClientIp(peer);
        }
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let entry = forwarded.len().checked_sub(depth).and_then(|i| forwarded.get(i));
        ClientIp(entry.and_then(|e| e.parse::<IpAddr>().ok()).or(peer))
    }

    /// As resolved for this request by `telemetry::request_context`.
    pub fn of(req: &HttpRequest) -> ClientIp {
        req.extensions().get::<ClientIp>().copied().unwrap_or(ClientIp(None))
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_client_ip_is_the_entry_the_trusted_proxies_appended_if_it_is_an_ip() {
        let peer: std::net::SocketAddr = "10.0.0.9:5555".parse().unwrap();
        let long = "9".repeat(12_000);
        // (label, X-Forwarded-For headers, trusted depth, expected)
        let cases: &[(&str, &[&str], usize, &str)] = &[
            ("no header: the peer", &[], 1, "10.0.0.9"),
            ("depth 0 ignores the header", &["1.1.1.1"], 0, "10.0.0.9"),
            ("one proxy: the rightmost entry", &["6.6.6.6, 2.2.2.2"], 1, "2.2.2.2"),
            ("two proxies: one from the right", &["6.6.6.6, 3.3.3.3, 4.4.4.4"], 2, "3.3.3.3"),
            ("entries across repeated headers", &["6.6.6.6", "5.5.5.5"], 1, "5.5.5.5"),
            ("fewer entries than proxies: the peer", &["5.5.5.5"], 2, "10.0.0.9"),
            ("blank entries are skipped", &["7.7.7.7, , "], 1, "7.7.7.7"),
            ("IPv6", &["2001:db8::1"], 1, "2001:db8::1"),
            ("not an IP: the peer", &["1.1.1.1, evil"], 1, "10.0.0.9"),
            ("a huge value: the peer", &[long.as_str()], 1, "10.0.0.9"),
        ];
        for (label, headers, depth, expected) in cases {
            let mut request = TestRequest::default().peer_addr(peer);
            for value in *headers {
                request = request.append_header(("x-forwarded-for", *value));
            }
            assert_eq!(ClientIp::resolve(&request.to_http_request(), *depth).to_string(), *expected, "{label}");
        }
    }
}
