package webrtc

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestRemotePolicy(t *testing.T) {
	none := newRemotePolicy(nil)
	lan := newRemotePolicy([]string{"10.1.0.0/16", "fd12::/16", "127.0.0.1"})
	tests := []struct {
		addr        string
		want        string // with no allowed networks
		wantWithLAN string
	}{
		{"203.0.113.7", "", ""},
		{"2001:db8::1", "", ""},
		{"8.8.8.8", "", ""},
		{"0.0.0.0", ReasonUnspecified, ReasonUnspecified},
		{"0.1.2.3", ReasonUnspecified, ReasonUnspecified},
		{"::", ReasonUnspecified, ReasonUnspecified},
		{"127.0.0.1", ReasonLoopback, ""},
		{"127.0.0.3", ReasonLoopback, ReasonLoopback},
		{"::1", ReasonLoopback, ReasonLoopback},
		{"10.0.0.1", ReasonPrivate, ReasonPrivate},
		{"10.1.2.3", ReasonPrivate, ""},
		{"172.16.0.1", ReasonPrivate, ReasonPrivate},
		{"172.31.255.255", ReasonPrivate, ReasonPrivate},
		{"172.32.0.1", "", ""},
		{"192.168.1.1", ReasonPrivate, ReasonPrivate},
		{"100.64.0.1", ReasonPrivate, ReasonPrivate},
		{"100.127.255.254", ReasonPrivate, ReasonPrivate},
		{"fc00::1", ReasonPrivate, ReasonPrivate},
		{"fd12::5", ReasonPrivate, ""},
		{"fec0::1", ReasonPrivate, ReasonPrivate},
		{"169.254.1.1", ReasonLinkLocal, ReasonLinkLocal},
		{"fe80::1", ReasonLinkLocal, ReasonLinkLocal},
		{"fe80::1%eth0", ReasonLinkLocal, ReasonLinkLocal},
		{"169.254.169.254", ReasonMetadata, ReasonMetadata},
		{"fd00:ec2::254", ReasonMetadata, ReasonMetadata},
		{"100.100.100.200", ReasonMetadata, ReasonMetadata},
		{"224.0.0.1", ReasonMulticast, ReasonMulticast},
		{"239.255.255.250", ReasonMulticast, ReasonMulticast},
		{"ff02::1", ReasonMulticast, ReasonMulticast},
		{"255.255.255.255", ReasonReserved, ReasonReserved},
		{"240.0.0.1", ReasonReserved, ReasonReserved},
		{"::ffff:127.0.0.1", ReasonMapped, ReasonMapped},
		{"::ffff:10.1.2.3", ReasonMapped, ReasonMapped},
		{"::ffff:8.8.8.8", ReasonMapped, ReasonMapped},
		{"::127.0.0.1", ReasonMapped, ReasonMapped},
		{"::10.0.0.1", ReasonMapped, ReasonMapped},
		{"64:ff9b::a00:1", ReasonMapped, ReasonMapped},      // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", "", ""},                        // NAT64 of 8.8.8.8
		{"64:ff9b::a9fe:a9fe", ReasonMapped, ReasonMapped},  // NAT64 of the metadata address
		{"2002:7f00:1::1", ReasonMapped, ReasonMapped},      // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", ReasonMapped, ReasonMapped},    // 6to4 of 192.168.1.1
		{"2002:cb00:7107::1", "", ""},                       // 6to4 of 203.0.113.7
		{"2001:0:4136:e378::1", ReasonMapped, ReasonMapped}, // Teredo
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			if got := none.check(a); got != tt.want {
				t.Errorf("check(%s) = %q, want %q", tt.addr, got, tt.want)
			}
			if got := lan.check(a); got != tt.wantWithLAN {
				t.Errorf("with allowed networks, check(%s) = %q, want %q", tt.addr, got, tt.wantWithLAN)
			}
		})
	}
}

// TestRemotePolicyMetadataAlwaysRefused: a network that covers a metadata
// address does not let it through.
func TestRemotePolicyMetadataAlwaysRefused(t *testing.T) {
	p := newRemotePolicy([]string{"0.0.0.0/0", "::/0"})
	for _, s := range []string{"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.1.1", "::ffff:127.0.0.1", "224.0.0.1"} {
		if p.check(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s allowed by 0.0.0.0/0, ::/0", s)
		}
	}
	for _, s := range []string{"10.0.0.1", "127.0.0.1", "fc00::1"} {
		if r := p.check(netip.MustParseAddr(s)); r != "" {
			t.Errorf("%s refused (%s) though listed", s, r)
		}
	}
}

// TestRemotePolicyPionForm: pion's filter gets IPv4 in 4 or 16 bytes.
func TestRemotePolicyPionForm(t *testing.T) {
	p := newRemotePolicy(nil)
	if r := p.checkIP(net.ParseIP("127.0.0.1")); r != ReasonLoopback { // 16 bytes
		t.Errorf("16-byte 127.0.0.1: %q", r)
	}
	if r := p.checkIP(net.IPv4(10, 0, 0, 1).To4()); r != ReasonPrivate {
		t.Errorf("4-byte 10.0.0.1: %q", r)
	}
	if r := p.checkIP(net.ParseIP("203.0.113.9")); r != "" {
		t.Errorf("203.0.113.9: %q", r)
	}
	if r := p.checkIP(net.IP{1, 2, 3}); r != ReasonMalformed {
		t.Errorf("3-byte address: %q", r)
	}
}

func TestParseRemoteCandidate(t *testing.T) {
	p := newRemotePolicy(nil)
	tests := []struct {
		cand   string
		reason string
		addr   string
	}{
		{"candidate:1 1 udp 2130706431 203.0.113.7 5000 typ host", "", "203.0.113.7:5000"},
		{"1 1 UDP 2130706431 203.0.113.7 5001 typ host", "", "203.0.113.7:5001"},
		{"candidate:2 1 udp 1694498815 198.51.100.1 6000 typ srflx raddr 10.0.0.1 rport 7000", "", "198.51.100.1:6000"},
		{"candidate:3 1 udp 2130706431 10.0.0.5 5000 typ host", ReasonPrivate, ""},
		{"candidate:3 1 udp 1694498815 10.0.0.5 5000 typ srflx raddr 203.0.113.7 rport 9", ReasonPrivate, ""},
		{"candidate:4 1 udp 2130706431 127.0.0.3 5000 typ host", ReasonLoopback, ""},
		{"candidate:5 1 udp 2130706431 169.254.169.254 80 typ host", ReasonMetadata, ""},
		{"candidate:6 1 udp 2130706431 ::ffff:127.0.0.1 5000 typ host", ReasonMapped, ""},
		{"candidate:7 1 tcp 1518280447 203.0.113.7 9 typ host tcptype active", ReasonProtocol, ""},
		{"candidate:8 1 udp 2130706431 3c5f8e2a-1b2c-4d5e-8f90-123456789abc.local 5000 typ host", ReasonHostname, ""},
		{"candidate:9 1 udp 2130706431 203.0.113.7 0 typ host", ReasonMalformed, ""},
		{"candidate:garbage", ReasonMalformed, ""},
		{"", ReasonMalformed, ""},
		{"candidate:1 1 udp 2130706431 203.0.113.7 5000 typ host " + strings.Repeat("x", 600), ReasonMalformed, ""},
	}
	for _, tt := range tests {
		ap, reason := p.parseRemoteCandidate(tt.cand)
		if reason != tt.reason {
			t.Errorf("%.60q: reason %q, want %q", tt.cand, reason, tt.reason)
			continue
		}
		if tt.addr != "" && ap.String() != tt.addr {
			t.Errorf("%.60q: address %s, want %s", tt.cand, ap, tt.addr)
		}
	}
}

func TestRemoteGenDedupeAndCap(t *testing.T) {
	var g remoteGen
	ap := netip.MustParseAddrPort("203.0.113.7:5000")
	if r := g.admit(ap, "c"); r != "" {
		t.Fatalf("first: %q", r)
	}
	if r := g.admit(ap, "c"); r != ReasonDuplicate {
		t.Fatalf("second: %q, want duplicate", r)
	}
	for i := 1; i < MaxRemoteCandidates; i++ {
		if r := g.admit(netip.AddrPortFrom(ap.Addr(), uint16(5000+i)), "c"); r != "" {
			t.Fatalf("candidate %d: %q", i, r)
		}
	}
	if r := g.admit(netip.MustParseAddrPort("203.0.113.8:1"), "c"); r != ReasonLimit {
		t.Fatalf("past the cap: %q, want limit", r)
	}
	if r := g.admit(ap, "c"); r != ReasonDuplicate {
		t.Fatalf("a known one past the cap: %q, want duplicate", r)
	}
}

func TestICECredentials(t *testing.T) {
	for _, tt := range []struct {
		s          string
		ufrag, pwd bool
	}{
		{"abcd", true, false},
		{"abc", false, false},
		{"a+/9", true, false},
		{"abcdefghijklmnopqrstuv", true, true},
		{"abcdefghijklmnopqrstu", true, false},
		{"abcd efghijklmnopqrstuv", false, false},
		{"abcd:efghijklmnopqrstuv", false, false},
		{"abcd\r\nefghijklmnopqrstuv", false, false},
		{"évian-abcdefghijklmnopq", false, false},
		{strings.Repeat("a", 256), true, true},
		{strings.Repeat("a", 257), false, false},
	} {
		if got := ValidUfrag(tt.s); got != tt.ufrag {
			t.Errorf("ValidUfrag(%.20q) = %v", tt.s, got)
		}
		if got := ValidPwd(tt.s); got != tt.pwd {
			t.Errorf("ValidPwd(%.20q) = %v", tt.s, got)
		}
	}
}

func TestConfigAllowedRemoteNetworks(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"private", Config{AllowedRemoteNetworks: []string{"10.0.0.0/8", "fd00::/8", "192.168.1.5"}}, ""},
		{"loopback with loopback candidates", Config{LoopbackCandidates: true, AllowedRemoteNetworks: []string{"127.0.0.0/8"}}, ""},
		{"loopback without", Config{AllowedRemoteNetworks: []string{"10.0.0.0/8", "127.0.0.1/32"}}, "allowed_remote_networks[1]: \"127.0.0.1/32\" reaches loopback"},
		{"everything without", Config{AllowedRemoteNetworks: []string{"0.0.0.0/0"}}, "allowed_remote_networks[0]"},
		{"garbage", Config{AllowedRemoteNetworks: []string{"10.0.0.0/33"}}, "allowed_remote_networks[0]: \"10.0.0.0/33\" is not"},
		{"mapped", Config{AllowedRemoteNetworks: []string{"::ffff:10.0.0.0/104"}}, "IPv4-mapped"},
		{"ips", Config{IPs: []string{"203.0.113.0/24", "nope"}}, "ips[1]: \"nope\""},
		{"interfaces", Config{Interfaces: []string{"eth0", " "}}, "interfaces[1]: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.ApplyDefaults()
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestGatewayICEServers: the gateway's own peers never use TURN.
func TestGatewayICEServers(t *testing.T) {
	got := gatewayICEServers([]ICEServer{
		{URLs: []string{"stun:stun.example.com:3478", "turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"}, Username: "u", Credential: "c"},
		{URLs: []string{"turn:other.example.com"}, Username: "u", Credential: "c"},
		{URLs: []string{"stuns:stun2.example.com"}},
	})
	if len(got) != 2 {
		t.Fatalf("servers: %+v", got)
	}
	if len(got[0].URLs) != 1 || got[0].URLs[0] != "stun:stun.example.com:3478" || got[0].Username != "" || got[0].Credential != nil {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].URLs[0] != "stuns:stun2.example.com" {
		t.Errorf("second: %+v", got[1])
	}
}

// TestLocalFilters: webrtc.interfaces and webrtc.ips choose where host
// candidates are gathered; loopback passes only when asked for.
func TestLocalFilters(t *testing.T) {
	iface, ip := localFilters(Config{}, options{})
	if iface != nil || ip != nil {
		t.Fatal("filters without interfaces or ips")
	}
	cfg := Config{Interfaces: []string{"eth0"}, IPs: []string{"203.0.113.0/24", "2001:db8::1"}}
	iface, ip = localFilters(cfg, options{})
	lo := "lo"
	for _, tt := range []struct {
		name string
		want bool
	}{{"eth0", true}, {"docker0", false}, {lo, false}} {
		if got := iface(tt.name); got != tt.want {
			t.Errorf("interface %s: %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{{"203.0.113.5", true}, {"10.0.0.1", false}, {"2001:db8::1", true}, {"2001:db8::2", false}, {"127.0.0.1", false}} {
		if got := ip(net.ParseIP(tt.addr)); got != tt.want {
			t.Errorf("address %s: %v, want %v", tt.addr, got, tt.want)
		}
	}
	_, ip = localFilters(cfg, options{includeLoopback: true})
	if !ip(net.ParseIP("127.0.0.1")) || ip(net.ParseIP("10.0.0.1")) {
		t.Error("with loopback candidates: 127.0.0.1 must pass and 10.0.0.1 not")
	}
	_, ip = localFilters(Config{}, options{includeLoopback: true, loopbackOnly: true})
	if ip == nil || !ip(net.ParseIP("::1")) || ip(net.ParseIP("203.0.113.5")) {
		t.Error("loopback only: only loopback passes")
	}
}
