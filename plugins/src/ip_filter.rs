//! `ip_filter`: admits or refuses clients by address.
//!
//! ```yaml
//! - ip_filter: { allow: [10.0.0.0/8], deny: [10.6.6.0/24, 192.0.2.7] }
//! ```
//!
//! `deny` wins over `allow`; a non-empty `allow` admits only its members; an empty one admits
//! everyone not denied. A bare address means that one address (/32 or /128). The client
//! address is the one the gateway resolved (PROXY protocol, trusted `X-Forwarded-For`); an
//! IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack listener reports for an
//! IPv4 client) is matched as the IPv4 address it is. Refused: 403.

use async_trait::async_trait;
use gateway::plugin::Hooks;
use gateway::{BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, Session};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpFilterConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

pub struct IpFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpFilter {
    fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

#[async_trait]
impl Plugin for IpFilter {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, _session: &mut Session, state: &mut RequestState) -> Flow {
        if self.admits(state.client_ip) {
            Flow::Continue
        } else {
            Flow::Respond(Response::text(403, "Forbidden\n"))
        }
    }
}

/// A CIDR, or a bare address meaning just that address. IPv4-mapped IPv6 networks are
/// stored as IPv4 so that they match the canonical client address.
fn parse_net(text: &str, key: &str, i: usize) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(format!("{key}[{i}]: {text:?} is not an IP address or CIDR")),
        },
    };
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
    .trunc())
}

impl PluginConfig for IpFilter {
    const NAME: &'static str = "ip_filter";
    type Config = IpFilterConfig;

    fn build(config: IpFilterConfig, _cx: &BuildContext) -> Result<Self, String> {
        let parse_all = |list: &[String], key: &str| -> Result<Vec<IpNet>, String> {
            list.iter()
                .enumerate()
                .map(|(i, t)| parse_net(t.trim(), key, i))
                .collect()
        };
        let filter = IpFilter {
            allow: parse_all(&config.allow, "allow")?,
            deny: parse_all(&config.deny, "deny")?,
        };
        if filter.allow.is_empty() && filter.deny.is_empty() {
            log::warn!("ip_filter configured with neither allow nor deny: it admits everyone");
        }
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<IpFilter, String> {
        gateway::plugin::testing::build(yaml)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_allow_is_exclusive() {
        let f = plugin("{ allow: [10.0.0.0/8], deny: [10.6.6.0/24] }").unwrap();
        assert!(f.admits(ip("10.1.2.3")));
        assert!(!f.admits(ip("10.6.6.9")));
        assert!(!f.admits(ip("192.168.1.1")));
        assert!(!f.admits(ip("2001:db8::1")));
    }

    #[test]
    fn empty_allow_admits_all_but_denied() {
        let f = plugin("{ deny: [192.0.2.7, \"2001:db8::/32\"] }").unwrap();
        assert!(!f.admits(ip("192.0.2.7")));
        assert!(f.admits(ip("192.0.2.8")));
        assert!(!f.admits(ip("2001:db8::5")));
        assert!(f.admits(ip("2001:db9::5")));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_rules() {
        let f = plugin("{ allow: [127.0.0.1] }").unwrap();
        assert!(f.admits(ip("::ffff:127.0.0.1")));
        assert!(!f.admits(ip("::ffff:127.0.0.2")));
        let f = plugin("{ deny: [\"::ffff:10.0.0.0/104\"] }").unwrap();
        assert!(!f.admits(ip("10.9.9.9")));
        assert!(f.admits(ip("11.0.0.1")));
    }

    #[test]
    fn host_bits_are_ignored_and_bad_entries_refused() {
        let f = plugin("{ allow: [10.1.2.3/8] }").unwrap();
        assert!(f.admits(ip("10.200.0.1")));
        let err = plugin("{ deny: [10.0.0.0/8, nonsense] }").err().unwrap();
        assert!(err.starts_with("deny[1]:"), "{err}");
        assert!(plugin("{ allow: [10.0.0.0/33] }").is_err());
    }
}
