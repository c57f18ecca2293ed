//! Capability grants: what a plugin asks for, intersected with what the
//! operator granted. Every outbound check goes through this one module.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An origin: scheme, lowercase host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Explicit or default port.
    pub port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is allowed, nothing else).
    ///
    /// # Errors
    /// A message saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| format!("`{text}` is not an origin (scheme://host[:port]): {e}"))?;
        if uri
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
        {
            return Err(format!(
                "`{text}` has a path; an origin is scheme://host[:port]"
            ));
        }
        Self::of_uri(&uri).ok_or_else(|| format!("`{text}` is not an http or https origin"))
    }

    /// The origin of a URI, when it is an absolute http(s) URI.
    pub fn of_uri(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri
            .host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(Self {
            scheme,
            host,
            port: uri.port_u16().unwrap_or(default_port),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// One origin the operator granted to a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The granted origin.
    pub origin: Origin,
    /// Whether loopback and private addresses may be reached for it.
    pub private: bool,
}

/// The origins a loaded plugin may reach: requested ∩ granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundAllowList {
    grants: Vec<Grant>,
}

/// What the plugin's `metadata.outbound` means for "anything granted".
pub const ANY_GRANTED: &str = "*";

impl OutboundAllowList {
    /// Intersects what the plugin asks for with the operator's grants.
    ///
    /// # Errors
    /// When the plugin asks for an origin that was not granted: such a plugin
    /// does not load.
    pub fn intersect(requested: &[String], granted: &[Grant]) -> Result<Self, String> {
        if requested.iter().any(|r| r == ANY_GRANTED) {
            return Ok(Self {
                grants: granted.to_vec(),
            });
        }
        let mut grants = Vec::new();
        for text in requested {
            let origin = Origin::parse(text).map_err(|e| format!("plugin metadata: {e}"))?;
            match granted.iter().find(|g| g.origin == origin) {
                Some(grant) => grants.push(grant.clone()),
                None => {
                    return Err(format!(
                        "the plugin asks for outbound access to `{origin}`, which the operator did not grant; \
                         add it to the plugin's `outbound` list or use another plugin"
                    ));
                }
            }
        }
        Ok(Self { grants })
    }

    /// The grant covering `origin`, if any.
    pub fn grant_for(&self, origin: &Origin) -> Option<&Grant> {
        self.grants.iter().find(|g| &g.origin == origin)
    }

    /// Whether the plugin may reach nothing at all.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A public address: reachable when the origin is granted.
    Public,
    /// Loopback, private, shared or otherwise local: needs `private = true`.
    Private,
    /// Link-local and cloud metadata addresses: never reachable.
    Forbidden,
}

/// Classifies an address, looking through IPv4-mapped and -compatible IPv6.
pub fn classify_address(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let segments = v6.segments();
            // IPv4-compatible (::a.b.c.d, deprecated) also maps to v4.
            if segments[..6].iter().all(|s| *s == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return classify_v4(Ipv4Addr::new(a, b, c, d));
            }
            classify_v6(v6)
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, _, _] = ip.octets();
    if ip.is_link_local() || ip == Ipv4Addr::new(100, 100, 100, 200) {
        // 169.254.0.0/16 holds the EC2/ECS/GCP metadata and credential
        // endpoints; 100.100.100.200 is Alibaba's.
        return AddressClass::Forbidden;
    }
    let shared = a == 100 && (64..128).contains(&b);
    if ip.is_loopback()
        || ip.is_private()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared
        || a == 0
        || a >= 240
    {
        return AddressClass::Private;
    }
    AddressClass::Public
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if (first & 0xffc0) == 0xfe80 || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return AddressClass::Forbidden;
    }
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || (first & 0xfe00) == 0xfc00 {
        return AddressClass::Private;
    }
    AddressClass::Public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(origin: &str, private: bool) -> Grant {
        Grant {
            origin: Origin::parse(origin).unwrap(),
            private,
        }
    }

    #[test]
    fn origins_normalise_default_ports_and_case() {
        assert_eq!(
            Origin::parse("HTTPS://Issuer.Example").unwrap(),
            Origin::parse("https://issuer.example:443/").unwrap()
        );
        assert!(Origin::parse("https://issuer.example/path").is_err());
        assert!(Origin::parse("ftp://issuer.example").is_err());
    }

    #[test]
    fn a_plugin_asking_for_more_than_granted_does_not_load() {
        let granted = [grant("https://issuer.example", false)];
        let err =
            OutboundAllowList::intersect(&["https://evil.example".into()], &granted).unwrap_err();
        assert!(err.contains("https://evil.example:443"), "{err}");
        let ok =
            OutboundAllowList::intersect(&["https://issuer.example".into()], &granted).unwrap();
        assert!(
            ok.grant_for(&Origin::parse("https://issuer.example").unwrap())
                .is_some()
        );
    }

    #[test]
    fn granted_but_not_requested_is_not_reachable() {
        let granted = [grant("https://issuer.example", false)];
        let list = OutboundAllowList::intersect(&[], &granted).unwrap();
        assert!(list.is_empty());
    }

    #[test]
    fn metadata_and_link_local_are_forbidden_even_when_mapped() {
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
        ] {
            assert_eq!(
                classify_address(ip.parse().unwrap()),
                AddressClass::Forbidden,
                "{ip}"
            );
        }
    }

    #[test]
    fn private_ranges_need_a_private_grant() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(
                classify_address(ip.parse().unwrap()),
                AddressClass::Private,
                "{ip}"
            );
        }
        assert_eq!(
            classify_address("93.184.216.34".parse().unwrap()),
            AddressClass::Public
        );
        assert_eq!(
            classify_address("2606:4700::1111".parse().unwrap()),
            AddressClass::Public
        );
    }
}
