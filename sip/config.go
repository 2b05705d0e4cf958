package sip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Config is the gateway-wide SIP section of the YAML file (key "sip").
type Config struct {
	// Listen holds "transport:host:port" entries, e.g. "udp:0.0.0.0:5060".
	Listen []string `yaml:"listen"`
	// PublicAddress is the host put in Contact and SDP when behind NAT.
	PublicAddress string `yaml:"public_address"`
	// RTPPortRange is the inclusive range of local RTP ports.
	RTPPortRange [2]int `yaml:"rtp_port_range"`
	// TLSCert and TLSKey are the server certificate for "tls:" listeners.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// UserAgent is sent in User-Agent and Server headers.
	UserAgent string `yaml:"user_agent"`
	// ScannerSilence, on unless set to false, drops requests from sources
	// outside every trunk's allow_inbound_from before they are parsed;
	// false answers each of them one stateless 403 (rate-limited per
	// source). Either way in-dialog requests and CANCELs from such
	// sources get nothing.
	ScannerSilence *bool `yaml:"scanner_silence"`
	// InboundPrefix is the user part prefix that routes an inbound INVITE
	// to a conversation ("conv-" in sip:conv-<id>@gateway).
	InboundPrefix string `yaml:"inbound_prefix"`
	// RTPTimeout ends an answered call whose far end has sent no RTP for
	// this long while not on hold (a PBX that lost the call, or a dead
	// network path); 0 means 30s. From 2s to 1h.
	RTPTimeout time.Duration `yaml:"rtp_timeout"`
}

// TrunkConfig is one entry of the top-level "trunks" list: a SIP trunk or PBX.
type TrunkConfig struct {
	Name      string `yaml:"name"`
	URI       string `yaml:"uri"`
	Transport string `yaml:"transport"` // udp | tcp | tls
	Username  string `yaml:"username"`
	Password  string `yaml:"password"` // may be ${ENV}
	// AuthUser overrides Username in digest credentials.
	AuthUser string `yaml:"auth_user"`
	Register bool   `yaml:"register"`
	// RegisterExpiry is the requested registration lifetime in seconds.
	RegisterExpiry int      `yaml:"register_expiry"`
	Codecs         []string `yaml:"codecs"`
	// AllowInboundFrom lists CIDRs whose requests this trunk accepts.
	AllowInboundFrom []string `yaml:"allow_inbound_from"`
	// InboundAuth accepts INVITEs from other addresses too when they
	// answer a digest challenge with this trunk's inbound credentials
	// (inbound_username and inbound_password, else username and
	// password). Five failures from one address silence it for 15 minutes.
	InboundAuth bool `yaml:"inbound_auth"`
	MaxCalls    int  `yaml:"max_calls"`
	// OptionsInterval is the OPTIONS keepalive period in seconds (0: off).
	OptionsInterval int `yaml:"options_interval"`
	// FromUser and FromDisplay set the caller ID on outbound calls.
	FromUser    string `yaml:"from_user"`
	FromDisplay string `yaml:"from_display"`
	// AssertedIdentity, when set, is sent as P-Asserted-Identity.
	AssertedIdentity string `yaml:"asserted_identity"`
	// Privacy is sent as the Privacy header (e.g. "id").
	Privacy string `yaml:"privacy"`
	// SRTP enables SDES-SRTP (RTP/SAVP) toward this trunk.
	SRTP bool `yaml:"srtp"`
	// TLSInsecureSkipVerify disables certificate checks for this tls
	// trunk only, with a warning at start (see CheckTrunkTLS for hosts
	// given as IP addresses).
	TLSInsecureSkipVerify bool `yaml:"tls_insecure_skip_verify"`
	// Normalize rewrites dialled numbers before sending, in order.
	Normalize []NormalizeRule `yaml:"normalize"`
	// SymmetricRTP is for a PBX or phones behind NAT, whose RTP comes from
	// another address or port than their SDP gives. Media may then move
	// to such a source, but only one whose IP is in AllowInboundFrom (or
	// is the SDP's IP) and only after several consecutive in-sequence
	// packets of one SSRC from it. Without it, media is taken only from
	// the SDP's address and port.
	SymmetricRTP bool `yaml:"symmetric_rtp"`
	// TransferTargets lists the patterns a REFER's target must match; a
	// non-empty list replaces the default rule. A number pattern ("1xxx",
	// "+4420794601.", "600") matches the dialled number: digits, *, # and a
	// leading + match themselves, X any digit, Z 1-9, N 2-9, and a final
	// "." one or more further characters. A URI pattern
	// ("sip:*@pbx.example.com", "sip:2xxx@pbx.example.com:5060") matches
	// sip: targets on that host (any port unless one is given) whose user
	// is "*" (anyone), a number pattern, or exactly the name given.
	// Empty: only extensions on the trunk's own host that do not look like
	// public telephone numbers (no tel:, +, 00, 011, premium prefixes, or
	// more than six digits).
	TransferTargets []string `yaml:"transfer_targets"`
	// SRTPAllowInsecureTransport accepts srtp with transport udp or tcp,
	// where the SDES keys (RFC 4568) travel in clear in the SDP; a warning
	// is logged at start. Without it that combination is refused.
	SRTPAllowInsecureTransport bool `yaml:"srtp_allow_insecure_transport"`
	// InboundUsername and InboundPassword are the digest credentials an
	// inbound_auth caller must prove, kept apart from the outbound ones
	// (username/auth_user and password). When unset the outbound ones are
	// used, with a warning at start. InboundPassword may be ${ENV}.
	InboundUsername string `yaml:"inbound_username"`
	InboundPassword string `yaml:"inbound_password"`
	// TLSServerName is the name the certificate of a tls trunk must be
	// valid for, when it is not the host of uri (e.g. a PBX reached by
	// IP address whose certificate names pbx.example.com).
	TLSServerName string `yaml:"tls_server_name"`
	// InviteTimeout gives up on an INVITE that got no response at all,
	// not even 100 Trying, for this long: the PBX is unreachable (down,
	// or a host that drops the packets). RFC 3261 §17.1.1.2 would wait
	// for Timer B (64×T1, 32 s); a PBX that is up answers 100 Trying
	// within a fraction of a second (§17.2.1). 0 means 10s; from 1s to
	// 32s. It does not bound ringing: once any response came, the call
	// rings until answered or the gateway's ring timeout.
	InviteTimeout time.Duration `yaml:"invite_timeout"`
}

// DefaultInviteTimeout is the invite_timeout of a trunk that sets none.
const DefaultInviteTimeout = 10 * time.Second

// inviteTimeout is the trunk's invite_timeout, or the default.
func (t *TrunkConfig) inviteTimeout() time.Duration {
	if t.InviteTimeout > 0 {
		return t.InviteTimeout
	}
	return DefaultInviteTimeout
}

// NormalizeRule rewrites a dialled user part: a leading Strip prefix is
// replaced by Prepend.
type NormalizeRule struct {
	Match   string `yaml:"match"` // prefix the number must start with
	Strip   int    `yaml:"strip"` // digits to remove from the front
	Prepend string `yaml:"prepend"`
}

var knownCodecs = map[string]bool{"PCMU": true, "PCMA": true}

// ApplyDefaults fills unset fields with their defaults. It has no side effects.
func (c *Config) ApplyDefaults() {
	if len(c.Listen) == 0 {
		c.Listen = []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"}
	}
	if c.RTPPortRange == [2]int{} {
		c.RTPPortRange = [2]int{20000, 20999}
	}
	if c.UserAgent == "" {
		c.UserAgent = "Segue"
	}
	if c.InboundPrefix == "" {
		c.InboundPrefix = "conv-"
	}
	if c.ScannerSilence == nil {
		on := true
		c.ScannerSilence = &on
	}
}

// Silent reports whether requests from unknown sources are dropped
// unanswered (scanner_silence, on unless explicitly false).
func (c *Config) Silent() bool { return c.ScannerSilence == nil || *c.ScannerSilence }

// ApplyDefaults fills unset trunk fields with their defaults.
func (t *TrunkConfig) ApplyDefaults() {
	if t.Transport == "" {
		t.Transport = "udp"
	}
	if len(t.Codecs) == 0 {
		t.Codecs = []string{"PCMU", "PCMA"}
	}
	if t.RegisterExpiry == 0 {
		t.RegisterExpiry = 3600
	}
}

// Validate reports every problem in c; each error names the key relative
// to the "sip" section (e.g. "listen[0]: ...").
func (c *Config) Validate() error {
	var errs []error
	for i, l := range c.Listen {
		if _, _, err := ParseListen(l); err != nil {
			errs = append(errs, fmt.Errorf("listen[%d]: %w", i, err))
		}
	}
	if c.PublicAddress != "" {
		if strings.Contains(c.PublicAddress, ":") && net.ParseIP(c.PublicAddress) == nil {
			errs = append(errs, fmt.Errorf("public_address: %q must be a host name or IP address without port", c.PublicAddress))
		}
	}
	if err := validPortRange(c.RTPPortRange); err != nil {
		errs = append(errs, fmt.Errorf("rtp_port_range: %w", err))
	}
	if c.RTPTimeout != 0 && (c.RTPTimeout < 2*time.Second || c.RTPTimeout > time.Hour) {
		errs = append(errs, fmt.Errorf("rtp_timeout: %v is out of range; write a duration from 2s to 1h, such as 30s", c.RTPTimeout))
	}
	for i, l := range c.Listen {
		if tr, _, err := ParseListen(l); err == nil && tr == "tls" && (c.TLSCert == "" || c.TLSKey == "") {
			errs = append(errs, fmt.Errorf("listen[%d]: tls listener needs tls_cert and tls_key", i))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem in t relative to the trunk entry.
func (t *TrunkConfig) Validate() error {
	var errs []error
	if t.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if err := ValidateURI(t.URI); err != nil {
		errs = append(errs, fmt.Errorf("uri: %w", err))
	}
	switch t.Transport {
	case "udp", "tcp", "tls":
	default:
		errs = append(errs, fmt.Errorf("transport: %q is not one of udp, tcp, tls", t.Transport))
	}
	if t.Register && t.Username == "" {
		errs = append(errs, errors.New("username: required when register is true"))
	}
	if t.InboundAuth && (t.InboundUsername == "" && t.AuthUser == "" && t.Username == "" || t.InboundPassword == "" && t.Password == "") {
		errs = append(errs, errors.New("inbound_auth: needs inbound_username and inbound_password (or username and password)"))
	}
	if !t.InboundAuth && t.InboundUsername != "" {
		errs = append(errs, errors.New("inbound_username: only used with inbound_auth: true"))
	}
	if !t.InboundAuth && t.InboundPassword != "" {
		errs = append(errs, errors.New("inbound_password: only used with inbound_auth: true"))
	}
	if t.RegisterExpiry < 0 {
		errs = append(errs, errors.New("register_expiry: must not be negative"))
	}
	for i, c := range t.Codecs {
		if !knownCodecs[strings.ToUpper(c)] {
			errs = append(errs, fmt.Errorf("codecs[%d]: unknown codec %q (want PCMU or PCMA)", i, c))
		}
	}
	for i, cidr := range t.AllowInboundFrom {
		p, err := ParsePrefix(cidr)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow_inbound_from[%d]: %w", i, err))
		} else if t.SymmetricRTP && p.Bits() == 0 {
			errs = append(errs, fmt.Errorf("symmetric_rtp: allow_inbound_from[%d] %q admits every address, so anyone could take the call's media; list the PBX's networks", i, cidr))
		}
	}
	if t.MaxCalls < 0 {
		errs = append(errs, errors.New("max_calls: must not be negative"))
	}
	if t.OptionsInterval < 0 {
		errs = append(errs, errors.New("options_interval: must not be negative"))
	}
	if t.InviteTimeout != 0 && (t.InviteTimeout < time.Second || t.InviteTimeout > 32*time.Second) {
		errs = append(errs, fmt.Errorf("invite_timeout: %v is not from 1s to 32s", t.InviteTimeout))
	}
	if t.AssertedIdentity != "" {
		if err := ValidateURI(t.AssertedIdentity); err != nil {
			errs = append(errs, fmt.Errorf("asserted_identity: %w", err))
		}
	}
	for i, r := range t.Normalize {
		if r.Strip < 0 {
			errs = append(errs, fmt.Errorf("normalize[%d].strip: must not be negative", i))
		}
	}
	for i, p := range t.TransferTargets {
		if _, err := parseTransferPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("transfer_targets[%d]: %w", i, err))
		}
	}
	if t.TLSServerName != "" {
		if t.transportName() != "tls" {
			errs = append(errs, errors.New("tls_server_name: only used with transport: tls"))
		} else if strings.ContainsAny(t.TLSServerName, ":/@ \t") && net.ParseIP(t.TLSServerName) == nil {
			errs = append(errs, fmt.Errorf("tls_server_name: %q is not a host name", t.TLSServerName))
		}
	}
	if t.SRTP && t.insecureSDES() && !t.SRTPAllowInsecureTransport {
		errs = append(errs, fmt.Errorf("srtp: SDES keys would travel in clear over %s; use transport: tls (or set srtp_allow_insecure_transport: true)", t.transportName()))
	}
	return errors.Join(errs...)
}

// transportName is the trunk's transport as configured, udp when unset.
func (t *TrunkConfig) transportName() string {
	if t.Transport == "" {
		return "udp"
	}
	return strings.ToLower(t.Transport)
}

// insecureSDES reports whether SDES keys (RFC 4568 §8.1: the a=crypto
// line holds the master key) would cross the network in clear: anything
// but TLS signalling.
func (t *TrunkConfig) insecureSDES() bool { return t.transportName() != "tls" }

// ParseListen splits "udp:0.0.0.0:5060" into transport and host:port.
func ParseListen(s string) (transport, addr string, err error) {
	tr, hostport, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("%q: want transport:host:port, e.g. udp:0.0.0.0:5060", s)
	}
	switch tr {
	case "udp", "tcp", "tls":
	default:
		return "", "", fmt.Errorf("%q: transport %q is not one of udp, tcp, tls", s, tr)
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	return tr, hostport, nil
}

// ValidateURI checks that s is a sip:, sips: or tel: URI with a host
// (sip/sips) or a number (tel).
func ValidateURI(s string) error {
	if s == "" {
		return errors.New("required")
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return errors.New(`missing scheme "sip:"`)
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips":
		hostpart := rest
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			hostpart = rest[at+1:]
		}
		if i := strings.IndexAny(hostpart, ";?"); i >= 0 {
			hostpart = hostpart[:i]
		}
		if hostpart == "" {
			return fmt.Errorf("%q has no host", s)
		}
		return nil
	case "tel":
		if rest == "" {
			return fmt.Errorf("%q has no number", s)
		}
		return nil
	default:
		if strings.ContainsAny(scheme, ".") || net.ParseIP(scheme) != nil {
			return errors.New(`missing scheme "sip:"`)
		}
		return fmt.Errorf(`scheme %q is not sip, sips or tel`, scheme)
	}
}

// ParsePrefix accepts a CIDR or a bare IP address (taken as a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func validPortRange(r [2]int) error {
	if r[0] < 1 || r[1] > 65535 || r[0] > r[1] {
		return fmt.Errorf("[%d, %d] is not a port range within 1-65535", r[0], r[1])
	}
	if r[1]-r[0] < 1 {
		return errors.New("needs at least two ports (RTP and RTCP)")
	}
	return nil
}
