package webrtc

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST API specifies
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
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
	// run at once: widen it for more than a few hundred. Default
	// [50000, 50999]; config validation checks it covers the limits.
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
	// OpusComplexity is the effort of the Opus encoder that codes the
	// desk phone's audio toward the browser: "auto" (the default) or a
	// whole number from 1 to 10. That encoder is most of a transcoded
	// call's CPU. With auto it runs at complexity 1 without in-band FEC
	// while the browser's receiver reports show no loss (half the CPU of
	// 5, and no worse on speech that came through G.711), and at 5 with
	// FEC tuned to the reported loss (5-30 %) from the first report of
	// 1 % loss or more until reports have shown none for 10 s. A number
	// fixes the effort, with FEC on throughout: lower carries more calls
	// per core at some cost in quality (BENCHMARKS.md, "Make it fast"),
	// and at 1 the encoder codes no FEC, so the browser conceals every
	// lost packet instead of recovering it (2 is the least that keeps
	// FEC). 0 means the default, as it did before auto.
	OpusComplexity string `yaml:"opus_complexity"`
}

// DefaultOpusComplexity is the Opus encoder's effort with
// opus_complexity: auto once the browser reports loss.
const DefaultOpusComplexity = 5

// ICEServer is one STUN or TURN server. A TURN server takes either a
// shared secret, from which short-lived credentials are made for each
// user (the TURN REST API of coturn's use-auth-secret), or a static
// username and credential.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
	// Secret is the TURN server's shared secret (coturn's
	// static-auth-secret). With it, each user gets its own credential that
	// expires after TTL; see Ephemeral.
	Secret string `yaml:"secret"`
	// TTL is how long a credential made from Secret is valid (a duration
	// such as 4h). coturn also ends an allocation when its credential
	// expires, so it bounds the length of a call relayed through the
	// server. Default 4h.
	TTL time.Duration `yaml:"ttl"`
}

// DefaultTURNTTL is the default of ice_servers[].ttl.
const DefaultTURNTTL = 4 * time.Hour

// Ephemeral returns the TURN REST API credential of user, valid until
// now plus the server's TTL: the username is "<expiry>:<user>" (expiry in
// Unix seconds) and the credential base64(HMAC-SHA1(secret, username)),
// as coturn checks it with use-auth-secret (draft-uberti-behave-turn-rest-00
// §2.2). A server without a secret returns its static username and
// credential.
func (s ICEServer) Ephemeral(user string, now time.Time) (username, credential string, expires time.Time) {
	if s.Secret == "" {
		return s.Username, s.Credential, time.Time{}
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultTURNTTL
	}
	expires = now.Add(ttl).Truncate(time.Second)
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + user
	return username, TURNCredential(s.Secret, username), expires
}

// TURNCredential is base64(HMAC-SHA1(secret, username)), the password of
// a TURN REST API username.
func TURNCredential(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// IsTURN reports whether any of the server's URLs is a TURN one.
func (s ICEServer) IsTURN() bool {
	for _, u := range s.URLs {
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			return true
		}
	}
	return false
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.UDPPortRange == [2]int{} {
		c.UDPPortRange = [2]int{50000, 50999}
	}
	if c.Transcode == "" {
		c.Transcode = "auto"
	}
	if c.OpusComplexity == "" {
		c.OpusComplexity = OpusComplexityAuto
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
				if s.Secret == "" && (s.Username == "" || s.Credential == "") {
					errs = append(errs, fmt.Errorf("ice_servers[%d].urls[%d]: TURN server needs a secret (coturn use-auth-secret) or a username and credential", i, j))
				}
			default:
				errs = append(errs, fmt.Errorf("ice_servers[%d].urls[%d]: %q is not a stun:, stuns:, turn: or turns: URL", i, j, u))
			}
		}
		if s.Secret != "" {
			if len(s.Secret) < 16 {
				errs = append(errs, fmt.Errorf("ice_servers[%d].secret: too short (at least 16 characters)", i))
			}
			if s.Username != "" || s.Credential != "" {
				errs = append(errs, fmt.Errorf("ice_servers[%d].secret: give either a secret or a username and credential, not both", i))
			}
		}
		if s.TTL < 0 || (s.TTL > 0 && s.TTL < time.Minute) {
			errs = append(errs, fmt.Errorf("ice_servers[%d].ttl: %v is too short; write a duration of at least 1m, such as 4h", i, s.TTL))
		} else if s.TTL > 0 && s.Secret == "" {
			errs = append(errs, fmt.Errorf("ice_servers[%d].ttl: only credentials made from a secret expire; set secret", i))
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
	if _, err := parseOpusComplexity(c.OpusComplexity); err != nil {
		errs = append(errs, err)
	}
	switch c.Transcode {
	case "auto", "always":
	default:
		errs = append(errs, fmt.Errorf("transcode: %q is not one of auto, always", c.Transcode))
	}
	return errors.Join(errs...)
}
