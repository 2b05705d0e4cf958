package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// HTTPConfig is the "http" section.
type HTTPConfig struct {
	Listen    string `yaml:"listen"`
	PublicURL string `yaml:"public_url"`
	// AllowedOrigins are the sites allowed to embed the widget.
	AllowedOrigins []string `yaml:"allowed_origins"`
	TLSCert        string   `yaml:"tls_cert"`
	TLSKey         string   `yaml:"tls_key"`
	// TrustedProxies are the addresses (CIDRs or single IPs) of the
	// reverse proxies in front of the gateway. Only a request that comes
	// from one of them has its client address taken from X-Forwarded-For,
	// and then from the rightmost hop that is not itself a trusted proxy:
	// every hop to the left of it is written by the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TrustProxy is the older switch for trusted_proxies: true trusts
	// proxies on loopback and private addresses. It still works, with a
	// warning at start; it may not be combined with trusted_proxies.
	TrustProxy bool `yaml:"trust_proxy"`
	// AdminListen is where /metrics, the detailed /readyz and
	// /debug/pprof are served, apart from the public listener; "off"
	// serves them nowhere. Default 127.0.0.1:9090.
	AdminListen string `yaml:"admin_listen"`
	// SessionTTL is how long an agent's sign-in lasts (a duration such as
	// 12h); the console's socket closes when it ends. Default 12h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// MaxConnectionsPerIP caps the TCP connections open at once from one
	// client address (an IPv6 /64); trusted proxies are exempt. Default
	// 256; 0 is unlimited.
	MaxConnectionsPerIP *int `yaml:"max_connections_per_ip"`
	// DrainTimeout bounds a graceful stop (SIGTERM or SIGINT): new chats
	// and calls are refused at once, calls in progress hear a short
	// notice and are hung up, sockets are told the server is restarting,
	// and the process exits within this time. Default 10s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Defaults of the http section.
const (
	defaultAdminListen         = "127.0.0.1:9090"
	defaultSessionTTL          = 12 * time.Hour
	defaultMaxConnectionsPerIP = 256
	defaultDrainTimeout        = 10 * time.Second
	// adminOff is the value of http.admin_listen that turns it off.
	adminOff = "off"
)

// legacyTrustedProxies is what trust_proxy: true trusts: the loopback and
// private (RFC 1918, RFC 4193) networks.
var legacyTrustedProxies = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

func (h *HTTPConfig) applyDefaults() {
	if h.Listen == "" {
		h.Listen = ":8080"
	}
	if h.PublicURL == "" {
		h.PublicURL = "http://localhost:8080"
	}
	h.PublicURL = strings.TrimRight(h.PublicURL, "/")
	if len(h.AllowedOrigins) == 0 {
		if u, err := url.Parse(h.PublicURL); err == nil && u.Host != "" {
			h.AllowedOrigins = []string{u.Scheme + "://" + u.Host}
		}
	}
	if h.AdminListen == "" {
		h.AdminListen = defaultAdminListen
	}
	if h.SessionTTL == 0 {
		h.SessionTTL = defaultSessionTTL
	}
	if h.MaxConnectionsPerIP == nil {
		n := defaultMaxConnectionsPerIP
		h.MaxConnectionsPerIP = &n
	}
	if h.DrainTimeout == 0 {
		h.DrainTimeout = defaultDrainTimeout
	}
}

// sessionTTL is http.session_ttl, its default when unset.
func (h *HTTPConfig) sessionTTL() time.Duration {
	if h.SessionTTL <= 0 {
		return defaultSessionTTL
	}
	return h.SessionTTL
}

// maxConnsPerIP is http.max_connections_per_ip, its default when unset.
func (h *HTTPConfig) maxConnsPerIP() int {
	return valueOr(h.MaxConnectionsPerIP, defaultMaxConnectionsPerIP)
}

// adminEnabled reports whether the admin listener runs.
func (h *HTTPConfig) adminEnabled() bool { return h.AdminListen != "" && h.AdminListen != adminOff }

// trustedPrefixes parses trusted_proxies (or what trust_proxy stands for);
// entries that do not parse are left out (Validate reports them).
func (h *HTTPConfig) trustedPrefixes() []netip.Prefix {
	list := h.TrustedProxies
	if len(list) == 0 && h.TrustProxy {
		list = legacyTrustedProxies
	}
	var out []netip.Prefix
	for _, s := range list {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads a CIDR or a single address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validate reports every problem, naming keys relative to "http".
func (h *HTTPConfig) validate() error {
	var errs []error
	addf := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		addf("listen: %q: want host:port, e.g. \"127.0.0.1:8080\" or \":8080\"", h.Listen)
	}
	if u, err := url.Parse(h.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		addf("public_url: %q is not an http:// or https:// URL", h.PublicURL)
	}
	for i, o := range h.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			addf("allowed_origins[%d]: %q is not an origin like https://www.example.com", i, o)
		}
	}
	if (h.TLSCert == "") != (h.TLSKey == "") {
		addf("tls_cert: tls_cert and tls_key go together")
	}
	for i, s := range h.TrustedProxies {
		p, err := parsePrefix(s)
		switch {
		case err != nil:
			addf("trusted_proxies[%d]: %q is not an address or a CIDR such as 10.0.0.0/8", i, s)
		case p.Bits() == 0:
			addf("trusted_proxies[%d]: %q trusts every address, so any client could pick its own address", i, s)
		}
	}
	if h.TrustProxy && len(h.TrustedProxies) > 0 {
		addf("trust_proxy: replaced by trusted_proxies; remove trust_proxy")
	}
	if h.AdminListen != "" && h.AdminListen != adminOff {
		if _, _, err := net.SplitHostPort(h.AdminListen); err != nil {
			addf("admin_listen: %q: want host:port, e.g. \"127.0.0.1:9090\", or \"off\"", h.AdminListen)
		} else if h.AdminListen == h.Listen {
			addf("admin_listen: %q is also http.listen; the admin endpoints need a listener of their own", h.AdminListen)
		}
	}
	if h.SessionTTL < 0 || (h.SessionTTL > 0 && h.SessionTTL < time.Minute) {
		addf("session_ttl: %v is too short; write a duration of at least 1m, such as 12h", h.SessionTTL)
	}
	if h.maxConnsPerIP() < 0 {
		addf("max_connections_per_ip: must not be negative (0 is unlimited)")
	}
	if h.DrainTimeout < 0 || (h.DrainTimeout > 0 && h.DrainTimeout < 2*time.Second) || h.DrainTimeout > 5*time.Minute {
		addf("drain_timeout: %v is out of range; write a duration from 2s to 5m, such as 10s", h.DrainTimeout)
	}
	return errors.Join(errs...)
}

// warnings lists settings that work but deserve the admin's attention.
func (h *HTTPConfig) warnings() []string {
	var w []string
	if h.TrustProxy && len(h.TrustedProxies) == 0 {
		w = append(w, "http.trust_proxy is deprecated: it trusts X-Forwarded-For from every loopback and private address; "+
			"list your proxies in http.trusted_proxies instead")
	}
	if h.adminEnabled() && !loopbackHost(h.AdminListen) {
		w = append(w, fmt.Sprintf("http.admin_listen %q is not a loopback address: /metrics, /readyz and /debug/pprof are "+
			"reachable from the network; firewall it", h.AdminListen))
	}
	return w
}

// loopbackHost reports whether a host:port listens on loopback only:
// "localhost" or a loopback address (not "", 0.0.0.0 or ::).
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
