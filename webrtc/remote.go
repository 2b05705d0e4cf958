package webrtc

import (
	"net"
	"net/netip"
	"sort"
	"sync"
)

// Why a remote ICE candidate was refused: the values of the reason label
// of segue_webrtc_candidates_refused_total (see Engine.Refusals).
const (
	// ReasonUnspecified is 0.0.0.0/8 or ::.
	ReasonUnspecified = "unspecified"
	// ReasonLoopback is 127.0.0.0/8 or ::1, not in allowed_remote_networks.
	ReasonLoopback = "loopback"
	// ReasonPrivate is 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT),
	// fc00::/7 (ULA) or fec0::/10, not in allowed_remote_networks.
	ReasonPrivate = "private"
	// ReasonLinkLocal is 169.254/16 or fe80::/10.
	ReasonLinkLocal = "link_local"
	// ReasonMulticast is a multicast address.
	ReasonMulticast = "multicast"
	// ReasonReserved is 240.0.0.0/4, the limited broadcast address among them.
	ReasonReserved = "reserved"
	// ReasonMetadata is a cloud metadata service (169.254.169.254,
	// fd00:ec2::254, 100.100.100.200).
	ReasonMetadata = "metadata"
	// ReasonMapped is an IPv6 address carrying an IPv4 one: IPv4-mapped
	// (::ffff:0:0/96), IPv4-compatible (::/96), Teredo (2001::/32), and
	// NAT64 (64:ff9b::/96, 64:ff9b:1::/48) or 6to4 (2002::/16) around an
	// IPv4 address that is not public (allowed networks do not count:
	// such a packet leaves through a translator, not to the network).
	ReasonMapped = "mapped"
	// ReasonHostname is an mDNS name (browsers hide host addresses so);
	// the gateway resolves none.
	ReasonHostname = "hostname"
	// ReasonProtocol is a transport other than UDP.
	ReasonProtocol = "protocol"
	// ReasonMalformed is a candidate that cannot be parsed.
	ReasonMalformed = "malformed"
	// ReasonDuplicate is an address (ip:port) already given in the same
	// ICE generation, whatever its type, priority or related address.
	ReasonDuplicate = "duplicate"
	// ReasonStale is a trickled candidate of an ICE generation (ufrag)
	// that is not the current one.
	ReasonStale = "stale"
	// ReasonLimit is a candidate past MaxRemoteCandidates in one ICE
	// generation.
	ReasonLimit = "limit"
)

// metadataAddrs are cloud instance metadata services. They are refused
// even where allowed_remote_networks covers them.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OpenStack, Oracle
	netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task metadata
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS over IPv6
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
}

var (
	prefixThisNet   = netip.MustParsePrefix("0.0.0.0/8")
	prefixCGNAT     = netip.MustParsePrefix("100.64.0.0/10")
	prefixReserved  = netip.MustParsePrefix("240.0.0.0/4")
	prefixSiteLocal = netip.MustParsePrefix("fec0::/10")
	prefixCompat    = netip.MustParsePrefix("::/96")
	prefixTeredo    = netip.MustParsePrefix("2001::/32")
	prefix6to4      = netip.MustParsePrefix("2002::/16")
	prefixNAT64     = netip.MustParsePrefix("64:ff9b::/96")
	prefixNAT64Loc  = netip.MustParsePrefix("64:ff9b:1::/48")
	loopbackV4      = netip.MustParsePrefix("127.0.0.0/8")
	loopbackV6      = netip.MustParsePrefix("::1/128")
)

// remotePolicy decides which addresses the gateway may send ICE
// connectivity checks to. Public unicast addresses are allowed; loopback
// and private ones only within allowed; every other special-purpose
// address never.
type remotePolicy struct {
	allowed []netip.Prefix
}

// newRemotePolicy builds the policy from webrtc.allowed_remote_networks,
// which Validate has checked.
func newRemotePolicy(networks []string) remotePolicy {
	var p remotePolicy
	for _, n := range networks {
		if pfx, err := parseNetwork(n); err == nil {
			p.allowed = append(p.allowed, pfx)
		}
	}
	return p
}

// parseNetwork reads a CIDR prefix, or a lone address as a prefix of
// its full length.
func parseNetwork(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// check returns "" when the gateway may send to a, or the reason it may
// not.
func (p remotePolicy) check(a netip.Addr) string {
	if !a.IsValid() {
		return ReasonMalformed
	}
	a = a.WithZone("")
	if metadataAddrs[a] {
		return ReasonMetadata
	}
	switch {
	case a.IsUnspecified() || (a.Is4() && prefixThisNet.Contains(a)):
		return ReasonUnspecified
	case a.Is4In6():
		return ReasonMapped
	case a.IsLoopback():
		return p.unless(a, ReasonLoopback)
	case a.IsLinkLocalUnicast():
		return ReasonLinkLocal
	case a.IsMulticast():
		return ReasonMulticast
	case a.Is4() && prefixReserved.Contains(a):
		return ReasonReserved
	case a.Is6() && (prefixCompat.Contains(a) || prefixTeredo.Contains(a)):
		return ReasonMapped
	case a.Is6() && (prefixNAT64.Contains(a) || prefixNAT64Loc.Contains(a)):
		b := a.As16()
		if (remotePolicy{}).check(netip.AddrFrom4([4]byte(b[12:16]))) != "" {
			return ReasonMapped
		}
	case a.Is6() && prefix6to4.Contains(a):
		b := a.As16()
		if (remotePolicy{}).check(netip.AddrFrom4([4]byte(b[2:6]))) != "" {
			return ReasonMapped
		}
	case a.IsPrivate() || prefixCGNAT.Contains(a) || prefixSiteLocal.Contains(a):
		return p.unless(a, ReasonPrivate)
	}
	return ""
}

// unless returns reason, or "" if a lies in an allowed network.
func (p remotePolicy) unless(a netip.Addr, reason string) string {
	for _, n := range p.allowed {
		if n.Contains(a) {
			return ""
		}
	}
	return reason
}

// checkIP is check for a net.IP, as pion's remote filter passes it:
// pion sends to the IPv4 address an IPv4-mapped one stands for, so that
// address is the one checked.
func (p remotePolicy) checkIP(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ReasonMalformed
	}
	return p.check(a.Unmap())
}

// isLoopbackNetwork reports whether a prefix reaches into loopback.
func isLoopbackNetwork(p netip.Prefix) bool {
	return p.Overlaps(loopbackV4) || p.Overlaps(loopbackV6)
}

// refusals counts refused candidates or descriptions by reason.
type refusals struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (r *refusals) add(reason string) {
	r.mu.Lock()
	if r.n == nil {
		r.n = map[string]uint64{}
	}
	r.n[reason]++
	r.mu.Unlock()
}

func (r *refusals) snapshot() []Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Refusal, 0, len(r.n))
	for k, v := range r.n {
		out = append(out, Refusal{Reason: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out
}

// Refusal is how many remote candidates or session descriptions were
// refused for one reason since the Engine started.
type Refusal struct {
	Reason string
	Count  uint64
}
