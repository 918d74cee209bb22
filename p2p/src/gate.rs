//! The address gate: bounds on inbound connections per IP address and per subnet (/24 for
//! IPv4, /64 for IPv6), and bans of the addresses a banned peer used. Peer ids cost nothing,
//! so without it one host could take every inbound slot, or come back after a ban under a
//! fresh id.
//!
//! Inbound connections are judged when they arrive, before any handshake; pending and
//! established ones both count. A banned address is also refused once the handshake is done
//! (the ban may be newer than the connection) and when the node itself dials it. Loopback may
//! be exempt ([`ConnectionConfig::loopback_exempt`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::task::{Context, Poll};
use std::time::Instant;

use chorus_chain::limits;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::config::ConnectionConfig;

/// Why the gate refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    #[error("{ip} already has {max} inbound connections, the limit per address")]
    PerAddress { ip: IpAddr, max: u32 },
    #[error("{subnet} already has {max} inbound connections, the limit per subnet")]
    PerSubnet { subnet: Subnet, max: u32 },
    #[error("{ip} is banned")]
    Banned { ip: IpAddr },
}

impl AddressRefusal {
    /// The metric label.
    pub(crate) const fn as_str(&self) -> &'static str {
        match self {
            AddressRefusal::PerAddress { .. } => "per_address",
            AddressRefusal::PerSubnet { .. } => "per_subnet",
            AddressRefusal::Banned { .. } => "banned_address",
        }
    }
}

/// The network an address belongs to for the per-subnet limit: its first 24 (IPv4) or 64
/// (IPv6) bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet(IpAddr);

impl Subnet {
    pub fn of(ip: IpAddr) -> Subnet {
        Subnet(match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & !0xff)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.0.is_ipv4() { 24 } else { 64 };
        write!(f, "{}/{prefix}", self.0)
    }
}

/// The IP address a multiaddr starts with (IPv4-mapped IPv6 addresses as IPv4).
pub(crate) fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|protocol| match protocol {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip).to_canonical()),
        _ => None,
    })
}

#[derive(Debug, Clone, Copy)]
struct AddressBan {
    until: Instant,
    /// The peer banned with it: unbanning the peer lifts the address ban too.
    peer: PeerId,
}

/// The gate, as a behaviour that only judges connections (its handler does nothing).
pub(crate) struct AddressGate {
    config: ConnectionConfig,
    /// Inbound connections, pending or established, with the address each comes from. Bounded
    /// by the pending and established inbound limits the swarm enforces.
    inbound: HashMap<ConnectionId, IpAddr>,
    bans: BTreeMap<IpAddr, AddressBan>,
}

impl AddressGate {
    pub fn new(config: ConnectionConfig) -> AddressGate {
        AddressGate { config, inbound: HashMap::new(), bans: BTreeMap::new() }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.config.loopback_exempt && ip.is_loopback()
    }

    fn check_ban(&self, ip: IpAddr, now: Instant) -> Result<(), AddressRefusal> {
        match self.bans.get(&ip) {
            Some(ban) if ban.until > now => Err(AddressRefusal::Banned { ip }),
            _ => Ok(()),
        }
    }

    /// Whether one more inbound connection from `ip` may start.
    fn check_inbound(&self, ip: IpAddr, now: Instant) -> Result<(), AddressRefusal> {
        if self.exempt(ip) {
            return Ok(());
        }
        self.check_ban(ip, now)?;
        let subnet = Subnet::of(ip);
        let from_ip = self.inbound.values().filter(|other| **other == ip).count();
        let from_subnet = self.inbound.values().filter(|other| Subnet::of(**other) == subnet).count();
        let config = &self.config;
        if from_ip >= config.inbound_per_ip_max as usize {
            return Err(AddressRefusal::PerAddress { ip, max: config.inbound_per_ip_max });
        }
        if from_subnet >= config.inbound_per_subnet_max as usize {
            return Err(AddressRefusal::PerSubnet { subnet, max: config.inbound_per_subnet_max });
        }
        Ok(())
    }

    /// Refuses new connections from and to `ip` until `until` (loopback aside, when exempt),
    /// on behalf of `peer`. Connections already open stay: others may share the address.
    pub fn ban(&mut self, ip: IpAddr, peer: PeerId, until: Instant) {
        if self.exempt(ip) {
            return;
        }
        if !self.bans.contains_key(&ip)
            && self.bans.len() >= limits::BANNED_ADDRESSES_MAX as usize
            && let Some(first) = self.bans.iter().min_by_key(|(_, ban)| ban.until).map(|(ip, _)| *ip)
        {
            self.bans.remove(&first);
        }
        self.bans.insert(ip, AddressBan { until, peer });
    }

    /// Lifts the address bans that came with `peer`'s.
    pub fn unban_peer(&mut self, peer: &PeerId) {
        self.bans.retain(|_, ban| ban.peer != *peer);
    }

    pub fn expire(&mut self, now: Instant) {
        self.bans.retain(|_, ban| ban.until > now);
    }

    fn check_address(&self, address: &Multiaddr) -> Result<(), ConnectionDenied> {
        match ip_of(address) {
            Some(ip) if !self.exempt(ip) => self.check_ban(ip, Instant::now()).map_err(ConnectionDenied::new),
            _ => Ok(()),
        }
    }
}

impl NetworkBehaviour for AddressGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else { return Ok(()) };
        self.check_inbound(ip, Instant::now()).map_err(ConnectionDenied::new)?;
        self.inbound.insert(connection, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_address(remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        address: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_address(address)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // Every inbound connection ends in one of these, whoever refused it.
        match event {
            FromSwarm::ListenFailure(failure) => {
                self.inbound.remove(&failure.connection_id);
            }
            FromSwarm::ConnectionClosed(closed) => {
                self.inbound.remove(&closed.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn gate(loopback_exempt: bool) -> AddressGate {
        AddressGate::new(ConnectionConfig {
            inbound_per_ip_max: 2,
            inbound_per_subnet_max: 3,
            loopback_exempt,
            ..ConnectionConfig::default()
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    fn admit(gate: &mut AddressGate, address: &str) -> Result<ConnectionId, AddressRefusal> {
        let now = Instant::now();
        gate.check_inbound(ip(address), now)?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let connection = ConnectionId::new_unchecked(NEXT.fetch_add(1, Ordering::Relaxed));
        gate.inbound.insert(connection, ip(address));
        Ok(connection)
    }

    #[test]
    fn subnets_are_slash_24_and_slash_64() {
        assert_eq!(Subnet::of(ip("203.0.113.77")), Subnet::of(ip("203.0.113.1")));
        assert_ne!(Subnet::of(ip("203.0.113.77")), Subnet::of(ip("203.0.114.77")));
        assert_eq!(Subnet::of(ip("2001:db8:1:2::1")), Subnet::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(Subnet::of(ip("2001:db8:1:2::1")), Subnet::of(ip("2001:db8:1:3::1")));
        assert_eq!(Subnet::of(ip("::ffff:203.0.113.5")), Subnet::of(ip("203.0.113.9")));
        assert_eq!(Subnet::of(ip("203.0.113.77")).to_string(), "203.0.113.0/24");
        assert_eq!(Subnet::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
        let address: Multiaddr = "/ip6/::ffff:203.0.113.5/tcp/1".parse().expect("multiaddr");
        assert_eq!(ip_of(&address), Some(ip("203.0.113.5")));
    }

    #[test]
    fn inbound_connections_are_bounded_per_address_and_per_subnet() {
        let mut gate = gate(true);
        admit(&mut gate, "203.0.113.1").expect("first");
        let second = admit(&mut gate, "203.0.113.1").expect("second");
        assert_eq!(admit(&mut gate, "203.0.113.1"), Err(AddressRefusal::PerAddress { ip: ip("203.0.113.1"), max: 2 }));
        admit(&mut gate, "203.0.113.2").expect("another address of the subnet");
        assert_eq!(
            admit(&mut gate, "203.0.113.3"),
            Err(AddressRefusal::PerSubnet { subnet: Subnet::of(ip("203.0.113.3")), max: 3 })
        );
        admit(&mut gate, "198.51.100.1").expect("another subnet");
        // A closed connection frees its slot.
        gate.inbound.remove(&second);
        admit(&mut gate, "203.0.113.1").expect("room again");
        // Loopback is exempt by default, and counted when not.
        for _ in 0..10 {
            admit(&mut gate, "127.0.0.1").expect("exempt");
        }
        let mut strict = self::gate(false);
        admit(&mut strict, "127.0.0.1").expect("first");
        admit(&mut strict, "127.0.0.1").expect("second");
        assert!(admit(&mut strict, "127.0.0.1").is_err());
    }

    #[test]
    fn address_bans_expire_follow_their_peer_and_stay_bounded() {
        let mut gate = gate(true);
        let (peer, now) = (PeerId::random(), Instant::now());
        gate.ban(ip("203.0.113.1"), peer, now + Duration::from_secs(60));
        assert_eq!(gate.check_inbound(ip("203.0.113.1"), now), Err(AddressRefusal::Banned { ip: ip("203.0.113.1") }));
        assert_eq!(gate.check_inbound(ip("203.0.113.2"), now), Ok(()));
        assert_eq!(gate.check_inbound(ip("203.0.113.1"), now + Duration::from_secs(60)), Ok(()), "ended");
        gate.unban_peer(&peer);
        assert!(gate.bans.is_empty());
        gate.ban(ip("127.0.0.1"), peer, now + Duration::from_secs(60));
        assert!(gate.bans.is_empty(), "loopback is exempt");

        gate.ban(ip("203.0.113.1"), peer, now + Duration::from_secs(1));
        for index in 0..limits::BANNED_ADDRESSES_MAX {
            let address = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) + u128::from(index)));
            gate.ban(address, PeerId::random(), now + Duration::from_secs(60));
        }
        assert_eq!(gate.bans.len(), limits::BANNED_ADDRESSES_MAX as usize);
        assert!(!gate.bans.contains_key(&ip("203.0.113.1")), "the ban closest to its end goes first");
        gate.expire(now + Duration::from_secs(60));
        assert!(gate.bans.is_empty());
    }
}
