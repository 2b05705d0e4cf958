package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// TrunkState is the health of one trunk, for /metrics and /readyz.
type TrunkState struct {
	Name string
	// Register tells whether the trunk registers at all.
	Register bool
	// Registered is true while a REGISTER is in force.
	Registered      bool
	RegisteredUntil time.Time
	// RegisterError is the last registration failure, empty after success.
	RegisterError string
	// RegisteredElsewhere is true while another server holds the trunk's
	// registration (SetRegistrationHold): this one can still place
	// calls through the trunk.
	RegisteredElsewhere bool
	// Options tells whether OPTIONS keepalives run for this trunk.
	Options bool
	// Reachable is true when the last OPTIONS got a response.
	Reachable    bool
	OptionsRTT   time.Duration
	LastOptions  time.Time
	OptionsError string
	ActiveCalls  int
}

// Ready reports whether the trunk can carry calls as far as we know:
// registered when it registers, reachable when keepalives run.
func (t TrunkState) Ready() bool {
	if t.Register && !t.Registered && !t.RegisteredElsewhere {
		return false
	}
	if t.Options && !t.Reachable {
		return false
	}
	return true
}

type trunk struct {
	cfg       TrunkConfig
	uri       sipmsg.Uri
	host      string
	port      int
	transport string
	allow     []netip.Prefix
	transfer  []transferPattern
	// hostIPs are the addresses the trunk's host resolved to when Run
	// started; requests from them belong to the trunk.
	hostIPs []netip.Addr

	active int // guarded by Server.mu
	// stopLoops ends the trunk's register and OPTIONS loops and waits
	// for them (guarded by Server.mu; nil when none run).
	stopLoops func()

	mu    sync.Mutex
	state TrunkState
}

func newTrunk(tc TrunkConfig) (*trunk, error) {
	var u sipmsg.Uri
	if err := sipmsg.ParseUri(tc.URI, &u); err != nil {
		return nil, fmt.Errorf("uri: %w", err)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]")
	t := &trunk{cfg: tc, uri: u, host: host, port: u.Port, transport: strings.ToLower(tc.Transport)}
	if t.transport == "" {
		t.transport = "udp"
	}
	if t.port == 0 {
		t.port = 5060
		if t.transport == "tls" {
			t.port = 5061
		}
	}
	for _, a := range tc.AllowInboundFrom {
		p, err := ParsePrefix(a)
		if err != nil {
			return nil, err
		}
		t.allow = append(t.allow, p)
	}
	for _, s := range tc.TransferTargets {
		p, err := parseTransferPattern(s)
		if err != nil {
			return nil, err
		}
		t.transfer = append(t.transfer, p)
	}
	t.state = TrunkState{Name: tc.Name, Register: tc.Register, Options: tc.OptionsInterval > 0}
	return t, nil
}

func (t *trunk) hostport() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

func (t *trunk) fromUser() string {
	switch {
	case t.cfg.FromUser != "":
		return t.cfg.FromUser
	case t.cfg.Username != "":
		return t.cfg.Username
	}
	return "segue"
}

func (t *trunk) authUser() string {
	if t.cfg.AuthUser != "" {
		return t.cfg.AuthUser
	}
	return t.cfg.Username
}

// inboundUser is the digest username an inbound_auth caller must give.
func (t *trunk) inboundUser() string {
	if t.cfg.InboundUsername != "" {
		return t.cfg.InboundUsername
	}
	return t.authUser()
}

// inboundPassword is the password an inbound_auth caller must prove.
func (t *trunk) inboundPassword() string {
	if t.cfg.InboundPassword != "" {
		return t.cfg.InboundPassword
	}
	return t.cfg.Password
}

func (t *trunk) allows(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// isHost reports whether ip is one of the trunk host's addresses.
func (t *trunk) isHost(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, a := range t.hostIPs {
		if a == ip {
			return true
		}
	}
	return false
}

// sameHost reports whether u points at this trunk (for 3xx and REFER).
func (t *trunk) sameHost(u sipmsg.Uri) bool {
	if !strings.EqualFold(strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]"), t.host) {
		return false
	}
	return u.Port == 0 || u.Port == t.port
}

// normalize applies the trunk's number rules to a dialled user part: the
// first rule whose Match prefix fits strips and prepends.
func (t *trunk) normalize(user string) string {
	for _, r := range t.cfg.Normalize {
		if strings.HasPrefix(user, r.Match) {
			if r.Strip <= len(user) {
				user = user[r.Strip:]
			}
			return r.Prepend + user
		}
	}
	return user
}

// targetURI turns what the caller dials into a Request-URI on this
// trunk: a sip:/sips: URI keeps its host, a tel: URI or a bare number
// becomes sip:<number>@<trunk host>;user=phone (RFC 3261 §19.1.6).
func (t *trunk) targetURI(target string) (sipmsg.Uri, error) {
	target = strings.TrimSpace(target)
	var u sipmsg.Uri
	lower := strings.ToLower(target)
	switch {
	case strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:"):
		if err := sipmsg.ParseUri(target, &u); err != nil {
			return u, fmt.Errorf("sip: target %q: %w", target, err)
		}
		if u.Host == "" {
			return u, fmt.Errorf("sip: target %q has no host", target)
		}
		u.User = t.normalize(u.User)
		return u, nil
	case strings.HasPrefix(lower, "tel:"):
		num := target[4:]
		if i := strings.IndexByte(num, ';'); i >= 0 {
			num = num[:i]
		}
		return t.phoneURI(num)
	default:
		return t.phoneURI(target)
	}
}

func (t *trunk) phoneURI(num string) (sipmsg.Uri, error) {
	num = strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == ' ' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, num)
	if num == "" {
		return sipmsg.Uri{}, fmt.Errorf("sip: empty number")
	}
	for i, r := range num {
		if !(r >= '0' && r <= '9' || r == '*' || r == '#' || (r == '+' && i == 0)) {
			return sipmsg.Uri{}, fmt.Errorf("sip: %q is not a phone number", num)
		}
	}
	u := sipmsg.Uri{Scheme: "sip", User: t.normalize(num), Host: uriHost(t.host)}
	if t.port != 5060 {
		u.Port = t.port
	}
	u.UriParams = sipmsg.NewParams()
	u.UriParams.Add("user", "phone")
	return u, nil
}

func (t *trunk) snapshot() TrunkState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

func (t *trunk) update(f func(*TrunkState)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.state)
}

// TrunkStatus returns the state of every trunk, in config order.
func (s *Server) TrunkStatus() []TrunkState {
	out := make([]TrunkState, 0, len(s.trunkTable().order))
	for _, tr := range s.trunkTable().order {
		st := tr.snapshot()
		s.mu.Lock()
		st.ActiveCalls = tr.active
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}
