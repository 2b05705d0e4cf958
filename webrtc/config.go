package webrtc

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Config is the "webrtc" section of the YAML file.
type Config struct {
	// ICEServers are the STUN and TURN servers given to browsers. The
	// gateway's own peer connections use only the STUN ones: a TURN
	// relay of the gateway's would send its connectivity checks, toward
	// addresses a visitor chose, from inside the TURN server's network.
	ICEServers []ICEServer `yaml:"ice_servers"`
	// UDPPortRange is the inclusive range of local UDP ports for ICE. Each
	// peer connection takes one port per local address it gathers on (one
	// per interface and IP family), so the range bounds how many peers can
	// run at once: widen it for more than a couple of hundred.
	UDPPortRange [2]int `yaml:"udp_port_range"`
	// UDPMuxPort, when set, makes every peer connection share this one UDP
	// port (on each local address) instead of taking its own ports from
	// UDPPortRange: a single port to open in the firewall and no limit on
	// peers from the range. 0 leaves it off.
	UDPMuxPort int `yaml:"udp_mux_port"`
	// NAT1To1IPs are public addresses announced in host candidates when the
	// gateway sits behind a 1:1 NAT.
	NAT1To1IPs []string `yaml:"nat_1to1_ips"`
	// Transcode chooses between "auto" (take PCMU/PCMA straight from the
	// browser when the trunk allows it) and "always" (Opus from the browser).
	Transcode string `yaml:"transcode"`
	// LoopbackCandidates adds 127.0.0.1 and ::1 to the gathered candidates,
	// for demos and tests where browser and gateway share a machine that
	// may have no other interface.
	LoopbackCandidates bool `yaml:"loopback_candidates"`
	// AllowedRemoteNetworks are networks (CIDR prefixes, or single
	// addresses) of loopback or private addresses (10/8, 172.16/12,
	// 192.168/16, 100.64/10, fc00::/7) that browsers' ICE candidates may
	// point at. By default the gateway sends connectivity checks to
	// public addresses only, so that a visitor cannot aim them at hosts
	// inside the gateway's network. Link-local, multicast, unspecified,
	// IPv4-mapped and cloud metadata addresses are refused whatever this
	// says. Loopback may be listed only with LoopbackCandidates.
	AllowedRemoteNetworks []string `yaml:"allowed_remote_networks"`
	// Interfaces, when set, are the only network interfaces (by name,
	// e.g. "eth0") whose addresses the gateway gathers host candidates
	// on, and so shows to browsers.
	Interfaces []string `yaml:"interfaces"`
	// IPs, when set, are the only local addresses (CIDR prefixes, or
	// single addresses) the gateway gathers host candidates on. Behind a
	// 1:1 NAT, NAT1To1IPs shows the public address instead.
	IPs []string `yaml:"ips"`
}

// ICEServer is one STUN or TURN server.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.UDPPortRange == [2]int{} {
		c.UDPPortRange = [2]int{50000, 50199}
	}
	if c.Transcode == "" {
		c.Transcode = "auto"
	}
}

// Validate reports every problem in c, naming keys relative to "webrtc".
func (c *Config) Validate() error {
	var errs []error
	for i, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			errs = append(errs, fmt.Errorf("ice_servers[%d].urls: required", i))
		}
		for j, u := range s.URLs {
			scheme, _, _ := strings.Cut(u, ":")
			switch scheme {
			case "stun", "stuns":
			case "turn", "turns":
				if s.Username == "" || s.Credential == "" {
					errs = append(errs, fmt.Errorf("ice_servers[%d].urls[%d]: TURN server needs username and credential", i, j))
				}
			default:
				errs = append(errs, fmt.Errorf("ice_servers[%d].urls[%d]: %q is not a stun:, stuns:, turn: or turns: URL", i, j, u))
			}
		}
	}
	r := c.UDPPortRange
	if r[0] < 1 || r[1] > 65535 || r[0] > r[1] {
		errs = append(errs, fmt.Errorf("udp_port_range: [%d, %d] is not a port range within 1-65535", r[0], r[1]))
	}
	if c.UDPMuxPort < 0 || c.UDPMuxPort > 65535 {
		errs = append(errs, fmt.Errorf("udp_mux_port: %d is not a port within 1-65535 (0 for none)", c.UDPMuxPort))
	}
	for i, ip := range c.NAT1To1IPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("nat_1to1_ips[%d]: %q is not an IP address", i, ip))
		}
	}
	for i, n := range c.AllowedRemoteNetworks {
		p, err := parseNetwork(n)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("allowed_remote_networks[%d]: %q is not a CIDR prefix or an IP address", i, n))
		case p.Addr().Is4In6():
			errs = append(errs, fmt.Errorf("allowed_remote_networks[%d]: %q is IPv4-mapped; write the IPv4 prefix", i, n))
		case isLoopbackNetwork(p) && !c.LoopbackCandidates:
			errs = append(errs, fmt.Errorf("allowed_remote_networks[%d]: %q reaches loopback, which is allowed only with loopback_candidates: true (tests and demos)", i, n))
		}
	}
	for i, name := range c.Interfaces {
		if strings.TrimSpace(name) == "" {
			errs = append(errs, fmt.Errorf("interfaces[%d]: empty interface name", i))
		}
	}
	for i, n := range c.IPs {
		if _, err := parseNetwork(n); err != nil {
			errs = append(errs, fmt.Errorf("ips[%d]: %q is not a CIDR prefix or an IP address", i, n))
		}
	}
	switch c.Transcode {
	case "auto", "always":
	default:
		errs = append(errs, fmt.Errorf("transcode: %q is not one of auto, always", c.Transcode))
	}
	return errors.Join(errs...)
}
