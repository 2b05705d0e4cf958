package gateway

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// DemoPasswords are passwords that ship with Segue (the demo agent of
// configs/segue.yaml): an agent signing in with one of them is refused
// unless the gateway is reachable from its own machine only.
var DemoPasswords = []string{"segue-demo"}

// demoHashes are the bcrypt hashes of DemoPasswords that Segue has
// shipped. Start-up compares hashes as strings (a bcrypt comparison per
// agent would slow the start of large configs); sign-in compares the
// password itself, so a demo password hashed anew is caught there.
var demoHashes = map[string]string{
	"$2a$10$FW6Xm42.N5crZPw5Yauv9ukiwPMg4MmZTQDfd97b812ZoqVRoTmYq": "segue-demo",
}

// isDemoPassword reports whether pw is one of DemoPasswords.
func isDemoPassword(pw string) bool {
	for _, d := range DemoPasswords {
		if pw == d {
			return true
		}
	}
	return false
}

// loopbackOnly reports whether the web side is reachable from this
// machine alone: http.listen on a loopback address, a loopback
// public_url and no reverse proxy in front (a proxy publishes it).
func (c *Config) loopbackOnly() bool {
	if !loopbackHost(c.HTTP.Listen) || len(c.HTTP.TrustedProxies) > 0 || c.HTTP.TrustProxy {
		return false
	}
	u, err := url.Parse(c.HTTP.PublicURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// demoRefusal is the message for an agent whose password is a demo one.
func (c *Config) demoRefusal(key, agentID, pw string) error {
	return fmt.Errorf("%s: agent %q has the demo password %q, allowed only while the gateway is reachable from this "+
		"machine alone (http.listen and http.public_url on loopback, e.g. 127.0.0.1:8080, and no trusted_proxies); "+
		"set a password: run `segue agent passwd` and paste the hash it prints into %s", key, agentID, pw, key)
}

// checkExposure finds settings that are unsafe on a reachable gateway
// and resources that cannot cover the configured limits.
func (c *Config) checkExposure() []error {
	var errs []error
	if !c.loopbackOnly() {
		for i, a := range c.Agents {
			if pw, ok := demoHashes[a.PasswordHash]; ok {
				errs = append(errs, c.demoRefusal(fmt.Sprintf("agents[%d].password_hash", i), a.ID, pw))
			}
		}
	}
	// Each browser peer connection takes at least one port of the range
	// (one per local address it gathers on): a customer's for a call or
	// video, and the agent console's for each video session.
	if w := c.WebRTC; w.UDPMuxPort == 0 && w.UDPPortRange[0] > 0 && w.UDPPortRange[1] >= w.UDPPortRange[0] {
		ports := w.UDPPortRange[1] - w.UDPPortRange[0] + 1
		calls := 0
		if len(c.Trunks) > 0 {
			calls = c.Limits.MaxCalls
		}
		need := calls + 2*c.Limits.MaxVideoSessions
		if ports < need {
			errs = append(errs, fmt.Errorf("webrtc.udp_port_range: [%d, %d] holds %d ports, fewer than the %d peer connections "+
				"the limits allow (limits.max_calls %d with trunks + 2 × limits.max_video_sessions %d), at one port each; "+
				"widen it, lower the limits or set webrtc.udp_mux_port",
				w.UDPPortRange[0], w.UDPPortRange[1], ports, need, calls, c.Limits.MaxVideoSessions))
		}
	}
	return errs
}

// Warnings lists settings that work but deserve the admin's attention;
// `segue serve` logs them at start.
func (c *Config) Warnings() []string {
	w := c.HTTP.warnings()
	for i, s := range c.WebRTC.ICEServers {
		if s.Secret == "" && s.Credential != "" && s.IsTURN() {
			w = append(w, fmt.Sprintf("webrtc.ice_servers[%d] has a static credential: it is given to agents' consoles only, "+
				"never to customers; give the TURN server a secret (coturn use-auth-secret) for customers behind strict NAT", i))
		}
	}
	return w
}

// HoldsSecrets reports whether the configuration carries anything an
// attacker could use: a password hash other than the published demo
// one, a trunk password, a TURN credential or secret, the identity
// secret. The demo configuration holds none.
func (c *Config) HoldsSecrets() bool {
	for _, a := range c.Agents {
		if _, demo := demoHashes[a.PasswordHash]; !demo && a.PasswordHash != "" {
			return true
		}
	}
	for _, t := range c.Trunks {
		if t.Password != "" {
			return true
		}
	}
	for _, s := range c.WebRTC.ICEServers {
		if s.Credential != "" || s.Secret != "" {
			return true
		}
	}
	return c.Identity.Secret != ""
}
