//! `CONSOLE_ALLOWED_IPS`: which client addresses may reach the console (exact IPs or CIDR
//! ranges, IPv4 or IPv6). Empty allows any.
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
struct IpRange {
    network: IpAddr,
    prefix: u32,
}

impl IpRange {
    fn parse(raw: &str) -> Result<Self, String> {
        let (address, prefix) = raw.split_once('/').map_or((raw, None), |(a, p)| (a, Some(p)));
        let network: IpAddr = address.trim().parse().map_err(|_| format!("{raw:?} is not an IP address"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p.trim().parse().ok().filter(|p| *p <= bits).ok_or_else(|| format!("bad prefix in {raw:?}"))?,
        };
        Ok(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let masked = |bits: u128, width: u32| if self.prefix == 0 { 0 } else { bits >> (width - self.prefix) };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => masked(u32::from(net).into(), 32) == masked(u32::from(ip).into(), 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked(u128::from(net), 128) == masked(u128::from(ip), 128),
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist(Vec<IpRange>);

impl IpAllowlist {
    /// Comma-separated entries; an unreadable one is an error (a typo must not open the console).
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(IpRange::parse).collect::<Result<_, _>>().map(Self)
    }

    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        self.0.is_empty() || ip.is_some_and(|ip| self.0.iter().any(|range| range.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_admits_listed_addresses_and_ranges_only() {
        let list = IpAllowlist::parse("203.0.113.7, 10.0.0.0/8, 2001:db8::/32").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let cases = [
            ("the exact address", ip("203.0.113.7"), true),
            ("its neighbour", ip("203.0.113.8"), false),
            ("inside the /8", ip("10.255.1.2"), true),
            ("outside the /8", ip("11.0.0.1"), false),
            ("inside the IPv6 range", ip("2001:db8::1"), true),
            ("outside the IPv6 range", ip("2001:db9::1"), false),
            ("an IPv4-mapped IPv6 address", ip("::ffff:10.1.2.3"), true),
            ("no address known", None, false),
        ];
        for (label, address, expected) in cases {
            assert_eq!(list.admits(address), expected, "{label}");
        }
        assert!(IpAllowlist::parse("").unwrap().admits(None), "empty admits anyone");
        assert!(IpAllowlist::parse("0.0.0.0/0").unwrap().admits(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.1/x"] {
            assert!(IpAllowlist::parse(bad).is_err(), "{bad}");
        }
    }
}
