//! The netlink adapter: links, addresses and routes of the network namespace
//! the calling thread is in, through `rtnetlink`. Every `ensure_*` call is
//! idempotent: it changes only what differs, so an agent restarted on a
//! built node adopts it instead of recreating it.

use std::net::{IpAddr, Ipv4Addr};

use futures::{StreamExt, TryStreamExt};
use ipnetwork::Ipv4Network;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("opening a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink: {what}: {source}")]
    Netlink { what: String, source: rtnetlink::Error },
    #[error("{name} exists but is a {found} device, not a {wanted}; it is not ours: remove it or rename it")]
    Foreign { name: String, found: String, wanted: &'static str },
    #[error("{0} not found")]
    Missing(String),
    #[error("writing {path}: {source}")]
    Sysctl { path: String, source: std::io::Error },
}

fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

/// A pod's veth pair: the host end's name and MAC, the pod end's name (inside the pod) and
/// MAC, and the MTU of both.
#[derive(Debug, Clone)]
pub struct PodPair<'a> {
    pub host: &'a str,
    pub host_mac: [u8; 6],
    pub pod: &'a str,
    pub pod_mac: [u8; 6],
    pub mtu: u32,
}

/// The index of link `name` in the calling thread's namespace (`if_nametoindex`): one ioctl,
/// where a netlink lookup returns and parses the whole link.
pub fn index_of(name: &str) -> Result<u32, NetError> {
    let missing = || NetError::Missing(name.to_owned());
    let name_c = std::ffi::CString::new(name).map_err(|_| missing())?;
    // SAFETY: a NUL-terminated string that outlives the call; nothing else is touched.
    match unsafe { libc::if_nametoindex(name_c.as_ptr()) } {
        0 => Err(missing()),
        index => Ok(index),
    }
}

/// What the agent needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    pub mac: [u8; 6],
    pub controller: Option<u32>,
    pub kind: Option<String>,
    pub up: bool,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Self {
        let mut link = Link {
            name: String::new(),
            index: message.header.index,
            mtu: 0,
            mac: [0; 6],
            controller: None,
            kind: None,
            up: message.header.flags.contains(netlink_packet_route::link::LinkFlags::Up),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Address(mac) if mac.len() == 6 => link.mac.copy_from_slice(mac),
                LinkAttribute::Controller(index) => link.controller = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind_name(kind));
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Veth => "veth".into(),
        InfoKind::Vxlan => "vxlan".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The answer of a route lookup for one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTo {
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A netlink connection in the calling thread's network namespace; its
    /// I/O task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetError> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        match links.try_next().await {
            Ok(message) => Ok(message.as_ref().map(Link::from_message)),
            // The kernel answers a lookup of a missing name with ENODEV.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(err) => Err(failed(format!("looking up {name}"))(err)),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(message) => Ok(message.as_ref().map(Link::from_message)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(err) => Err(failed(format!("looking up link {index}"))(err)),
        }
    }

    /// The IPv4 addresses on a link, with their prefix lengths.
    pub async fn ipv4_addresses(&self, link: &Link) -> Result<Vec<Ipv4Network>, NetError> {
        let mut found = Vec::new();
        let mut addresses = self.handle.address().get().set_link_index_filter(link.index).execute();
        while let Some(message) =
            addresses.try_next().await.map_err(failed(format!("listing addresses of {}", link.name)))?
        {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attribute
                    && let Ok(network) = Ipv4Network::new(*ip, message.header.prefix_len)
                {
                    found.push(network);
                }
            }
        }
        Ok(found)
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, NetError> {
        let mut found = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(message) = links.try_next().await.map_err(failed("listing links"))? {
            found.push(Link::from_message(&message));
        }
        Ok(found)
    }

    /// The gateway of the IPv4 default route out of `link`, if there is one.
    pub async fn default_gateway(&self, link: &Link) -> Result<Option<Ipv4Addr>, NetError> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(filter).execute();
        while let Some(route) = routes.try_next().await.map_err(failed("listing routes"))? {
            let oif = route.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == link.index));
            if route.header.destination_prefix_length != 0 || !oif {
                continue;
            }
            let gateway = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(netlink_packet_route::route::RouteAddress::Inet(gw)) => Some(*gw),
                _ => None,
            });
            if gateway.is_some() {
                return Ok(gateway);
            }
        }
        Ok(None)
    }

    /// How the namespace routes to `ip` (`ip route get`): the route's interface and gateway;
    /// `None` when nothing routes it.
    pub async fn route_to(&self, ip: Ipv4Addr) -> Result<Option<RouteTo>, NetError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(ip, 32).build();
        let mut answers = self.handle.route().get(query).execute();
        let answer = match answers.try_next().await {
            Ok(answer) => answer,
            // ENETUNREACH and the like: no route at all.
            Err(rtnetlink::Error::NetlinkError(_)) => None,
            Err(err) => return Err(failed(format!("looking up the route to {ip}"))(err)),
        };
        Ok(answer.map(|route| RouteTo {
            oif: route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(index) => Some(*index),
                _ => None,
            }),
            gateway: route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(netlink_packet_route::route::RouteAddress::Inet(gw)) => Some(*gw),
                _ => None,
            }),
        }))
    }

    /// The link holding `ip`, if any.
    pub async fn link_with_address(&self, ip: Ipv4Addr) -> Result<Option<Link>, NetError> {
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) = addresses.try_next().await.map_err(failed("listing addresses"))? {
            let holds =
                message.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(a)) if *a == ip));
            if holds {
                return self.link_by_index(message.header.index).await;
            }
        }
        Ok(None)
    }

    /// The link of the IPv4 default route: the node's underlay.
    pub async fn default_route_link(&self) -> Result<Option<Link>, NetError> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(filter).execute();
        while let Some(route) = routes.try_next().await.map_err(failed("listing routes"))? {
            if route.header.destination_prefix_length != 0 {
                continue;
            }
            let oif = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(index) => Some(*index),
                _ => None,
            });
            if let Some(index) = oif {
                return self.link_by_index(index).await;
            }
        }
        Ok(None)
    }

    pub async fn require(&self, name: &str) -> Result<Link, NetError> {
        self.link(name).await?.ok_or_else(|| NetError::Missing(name.to_owned()))
    }

    /// The link, if it exists and is of `kind`; an error if it is of another.
    async fn existing(&self, name: &str, kind: &'static str) -> Result<Option<Link>, NetError> {
        match self.link(name).await? {
            Some(link) if link.kind.as_deref() == Some(kind) => Ok(Some(link)),
            Some(link) => Err(NetError::Foreign {
                name: name.to_owned(),
                found: link.kind.unwrap_or_else(|| "plain".into()),
                wanted: kind,
            }),
            None => Ok(None),
        }
    }

    pub async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<Link, NetError> {
        if self.existing(name, "bridge").await?.is_none() {
            let message = LinkBridge::new(name).mtu(mtu).build();
            self.handle.link().add(message).execute().await.map_err(failed(format!("creating bridge {name}")))?;
        }
        self.settle(name, mtu).await
    }

    /// A veth pair `name`/`peer` with the MACs `macs` (`name`'s, then `peer`'s), or the pair
    /// already there. The MACs are set at creation because systemd-udevd (its default
    /// `MACAddressPolicy=persistent`) replaces a new device's random MAC a moment after it
    /// appears, after the agent has read it; a MAC set by its creator it leaves alone.
    pub async fn ensure_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        macs: [[u8; 6]; 2],
    ) -> Result<(Link, Link), NetError> {
        if self.existing(name, "veth").await?.is_none() {
            let peer_message = LinkMessageBuilder::<LinkUnspec>::new()
                .name(peer.to_owned())
                .mtu(mtu)
                .address(macs[1].to_vec())
                .build();
            let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(name.to_owned())
                .mtu(mtu)
                .address(macs[0].to_vec())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message)))
                .build();
            self.handle.link().add(message).execute().await.map_err(failed(format!("creating veth {name}")))?;
        }
        Ok((self.settle(name, mtu).await?, self.settle(peer, mtu).await?))
    }

    /// A pod's veth pair, made in one request: `host` up on `bridge` here,
    /// its peer `ifname` created straight inside the pod's namespace. Making
    /// the peer there (as the reference `bridge` plugin does) instead of
    /// moving it spares the RCU grace periods a namespace move waits for.
    /// Creates the pair `host` (a port of `bridge`, up) and `ifname` inside the pod (down), both
    /// with `mtu`. `false` when `host` exists already (a repeated request).
    pub async fn create_pod_veth(
        &self,
        pair: &PodPair<'_>,
        bridge: &Link,
        pod_ns: &std::fs::File,
    ) -> Result<bool, NetError> {
        use std::os::fd::AsRawFd;
        let host = pair.host;
        // The pod end cannot be made up here: a veth end opened before its pair is linked
        // fails with ENOTCONN.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(pair.pod.to_owned())
            .mtu(pair.mtu)
            .address(pair.pod_mac.to_vec())
            .setns_by_fd(pod_ns.as_raw_fd())
            .build();
        let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_owned())
            .mtu(pair.mtu)
            .address(pair.host_mac.to_vec())
            .controller(bridge.index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        match self.handle.link().add(message).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(false),
            Err(source) => Err(NetError::Netlink { what: format!("creating veth {host}"), source }),
        }
    }

    /// A VXLAN device in external (collect-metadata) mode: eBPF sets each
    /// packet's tunnel destination, so no remote or VNI is configured.
    pub async fn ensure_vxlan(&self, name: &str, port: u16, mtu: u32) -> Result<Link, NetError> {
        if self.existing(name, "vxlan").await?.is_none() {
            let message = LinkVxlan::new(name, 0).port(port).collect_metadata(true).learning(false).mtu(mtu).build();
            self.handle.link().add(message).execute().await.map_err(failed(format!("creating vxlan {name}")))?;
        }
        self.settle(name, mtu).await
    }

    /// Sets the MTU if it differs and brings the link up.
    async fn settle(&self, name: &str, mtu: u32) -> Result<Link, NetError> {
        let link = self.require(name).await?;
        if link.mtu != mtu || !link.up {
            let message = LinkUnspec::new_with_index(link.index).mtu(mtu).up().build();
            self.handle.link().set(message).execute().await.map_err(failed(format!("setting up {name}")))?;
        }
        self.require(name).await
    }

    /// Renames a link (it must be down) and sets its MTU, then brings it up.
    pub async fn rename_up(&self, link: &Link, name: &str, mtu: u32) -> Result<Link, NetError> {
        if link.name != name {
            let message = LinkUnspec::new_with_index(link.index).name(name.to_owned()).build();
            self.handle
                .link()
                .set(message)
                .execute()
                .await
                .map_err(failed(format!("renaming {} to {name}", link.name)))?;
        }
        self.settle(name, mtu).await
    }

    /// Renames `link` to `name`, taking it down for the rename (Linux renames no interface that
    /// is up) and up again.
    pub async fn rename_down(&self, link: &Link, name: &str) -> Result<(), NetError> {
        let what = || format!("renaming {} to {name}", link.name);
        let down = LinkUnspec::new_with_index(link.index).down().build();
        self.handle.link().set(down).execute().await.map_err(failed(what()))?;
        let renamed = LinkUnspec::new_with_index(link.index).name(name.to_owned()).build();
        self.handle.link().set(renamed).execute().await.map_err(failed(what()))?;
        let up = LinkUnspec::new_with_index(link.index).up().build();
        self.handle.link().set(up).execute().await.map_err(failed(what()))
    }

    /// Configures a pod interface made a moment ago: brings it and `lo` up, adds `ip/prefix` and
    /// the default route via `gateway`; nothing is listed first, as nothing can be there.
    pub async fn configure_fresh_pod(
        &self,
        eth0: &Link,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), NetError> {
        let up = LinkUnspec::new_with_index(eth0.index).up().build();
        self.handle.link().set(up).execute().await.map_err(failed(format!("bringing up {}", eth0.name)))?;
        self.handle
            .address()
            .add(eth0.index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(failed(format!("adding {ip}/{prefix} to {}", eth0.name)))?;
        // `lo` is interface 1 in every network namespace.
        let lo = LinkUnspec::new_with_index(1).up().build();
        self.handle.link().set(lo).execute().await.map_err(failed("bringing up lo"))?;
        self.ensure_default_route(gateway, eth0).await
    }

    /// Routes everything via `gateway` out of `link` (the pod's default route).
    pub async fn ensure_default_route(&self, gateway: Ipv4Addr, link: &Link) -> Result<(), NetError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(link.index).build();
        self.handle.route().add(route).replace().execute().await.map_err(failed(format!("default route via {gateway}")))
    }

    /// Makes `port` a port of `bridge`.
    pub async fn attach(&self, port: &Link, bridge: &Link) -> Result<(), NetError> {
        if port.controller == Some(bridge.index) {
            return Ok(());
        }
        let message = LinkUnspec::new_with_index(port.index).controller(bridge.index).build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(failed(format!("adding {} to {}", port.name, bridge.name)))
    }

    /// Adds `ip/prefix` to the link unless it is there. Without a prefix
    /// route when `prefix_route` is false (lbr0 shares tun0's address).
    pub async fn ensure_address(
        &self,
        link: &Link,
        ip: Ipv4Addr,
        prefix: u8,
        prefix_route: bool,
    ) -> Result<(), NetError> {
        let mut addresses = self.handle.address().get().set_link_index_filter(link.index).execute();
        while let Some(message) =
            addresses.try_next().await.map_err(failed(format!("listing addresses of {}", link.name)))?
        {
            let has =
                message.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(a)) if *a == ip));
            if has && message.header.prefix_len == prefix {
                return Ok(());
            }
        }
        let mut request = self.handle.address().add(link.index, IpAddr::V4(ip), prefix);
        if !prefix_route {
            request.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
        }
        request.execute().await.map_err(failed(format!("adding {ip}/{prefix} to {}", link.name)))
    }

    /// Routes `destination` via `next_hop` out of `link`, next hop on-link.
    pub async fn ensure_route_via(
        &self,
        destination: Ipv4Network,
        next_hop: Ipv4Addr,
        link: &Link,
    ) -> Result<(), NetError> {
        let route: RouteMessage = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.network(), destination.prefix())
            .gateway(next_hop)
            .output_interface(link.index)
            .onlink()
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(failed(format!("routing {destination} via {next_hop} on {}", link.name)))
    }

    /// A permanent neighbour entry: `ip` is at `mac` on `link`.
    pub async fn ensure_neighbour(&self, ip: Ipv4Addr, mac: [u8; 6], link: &Link) -> Result<(), NetError> {
        self.handle
            .neighbours()
            .add(link.index, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .state(netlink_packet_route::neighbour::NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(failed(format!("neighbour {ip} on {}", link.name)))
    }

    /// Deletes a link; returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, NetError> {
        let Some(link) = self.link(name).await? else { return Ok(false) };
        self.handle.link().del(link.index).execute().await.map_err(failed(format!("deleting {name}")))?;
        Ok(true)
    }
}

/// The names of links deleted in the calling thread's namespace, as the kernel announces them
/// (`RTNLGRP_LINK`), from the moment of the call; the socket's I/O runs on the current tokio
/// runtime. The receiver ends when the socket fails (the kernel drops announcements a slow
/// reader leaves unread), so whoever needs every removal subscribes again and lists what
/// exists.
pub fn removed_links() -> Result<tokio::sync::mpsc::UnboundedReceiver<String>, NetError> {
    let (mut connection, _, mut messages) = rtnetlink::new_connection().map_err(NetError::Socket)?;
    let socket = connection.socket_mut().socket_mut();
    // Announcements reach only a bound socket; requests would bind it, this one sends none.
    socket.bind_auto().and_then(|_| socket.add_membership(libc::RTNLGRP_LINK)).map_err(NetError::Socket)?;
    tokio::spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) = message.payload else { continue };
            if tx.send(Link::from_message(&link).name).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Reads a sysctl of the current network namespace.
pub fn sysctl(key: &str) -> Result<String, NetError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    match std::fs::read_to_string(&path) {
        Ok(value) => Ok(value.trim().to_owned()),
        Err(source) => Err(NetError::Sysctl { path, source }),
    }
}

/// Writes an IPv4 sysctl of the current network namespace
/// (`/proc/sys/net/ipv4/...` is per namespace).
pub fn set_sysctl(key: &str, value: &str) -> Result<(), NetError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.trim() == value {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| NetError::Sysctl { path, source })
}
