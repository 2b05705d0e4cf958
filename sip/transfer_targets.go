package sip

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
)

// transferPattern is one compiled entry of trunks[].transfer_targets (the
// grammar is documented on TrunkConfig.TransferTargets). A number pattern
// has no host; a URI pattern has one.
type transferPattern struct {
	raw  string
	host string // lower case, without brackets; "" for a number pattern
	port int    // 0: any port
	// user is "*" (any user), a number pattern (when numeric), or a
	// name matched exactly.
	user    string
	numeric bool
}

// parseTransferPattern checks and compiles one transfer_targets entry.
func parseTransferPattern(s string) (transferPattern, error) {
	p := transferPattern{raw: s}
	if strings.TrimSpace(s) != s || s == "" {
		return p, fmt.Errorf("%q: empty or padded with spaces", s)
	}
	lower := strings.ToLower(s)
	if !strings.HasPrefix(lower, "sip:") && !strings.HasPrefix(lower, "sips:") {
		if strings.Contains(s, ":") || strings.Contains(s, "@") {
			return p, fmt.Errorf("%q: a URI pattern starts with sip: (tel: targets are matched by number patterns)", s)
		}
		if err := checkNumberPattern(s); err != nil {
			return p, fmt.Errorf("%q: %w", s, err)
		}
		p.user, p.numeric = s, true
		return p, nil
	}
	_, rest, _ := strings.Cut(s, ":")
	user, hostport, ok := strings.Cut(rest, "@")
	if !ok || user == "" {
		return p, fmt.Errorf("%q: want sip:<user>@<host>, with * for any user", s)
	}
	if strings.ContainsAny(hostport, ";?<>") {
		return p, fmt.Errorf("%q: parameters and headers are not allowed in a pattern", s)
	}
	host, port := hostport, 0
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		n, err := strconv.Atoi(hostport[i+1:])
		if err != nil || n < 1 || n > 65535 {
			return p, fmt.Errorf("%q: bad port %q", s, hostport[i+1:])
		}
		host, port = hostport[:i], n
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if host == "" || strings.ContainsAny(host, "*@ ") {
		return p, fmt.Errorf("%q: the host must be given exactly", s)
	}
	p.host, p.port, p.user = host, port, user
	switch {
	case user == "*":
	case isNumberPattern(user):
		if err := checkNumberPattern(user); err != nil {
			return p, fmt.Errorf("%q: %w", s, err)
		}
		p.numeric = true
	case strings.ContainsAny(user, "*"):
		return p, fmt.Errorf("%q: * stands alone for any user", s)
	}
	return p, nil
}

// isNumberPattern reports whether s is made only of pattern characters,
// so that a user part like "1xxx" is a pattern and "alice" a name.
func isNumberPattern(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789*#+xXzZnN.", r) {
			return false
		}
	}
	return true
}

func checkNumberPattern(s string) error {
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9', r == '*', r == '#':
		case strings.ContainsRune("xXzZnN", r):
		case r == '+':
			if i != 0 {
				return errors.New("+ is allowed only first")
			}
		case r == '.':
			if i != len(s)-1 || i == 0 {
				return errors.New(`"." is allowed only last, after at least one character`)
			}
		default:
			return fmt.Errorf("%q is not a digit, *, #, +, X, Z, N or a final \".\"", r)
		}
	}
	return nil
}

// matchNumber reports whether number matches pattern p: X any digit, Z
// 1-9, N 2-9, a final "." one or more further characters, anything else
// itself.
func matchNumber(p, number string) bool {
	i := 0
	for j := 0; j < len(p); j++ {
		c := p[j]
		if c == '.' && j == len(p)-1 {
			return i < len(number)
		}
		if i >= len(number) {
			return false
		}
		d := number[i]
		switch c {
		case 'x', 'X':
			if d < '0' || d > '9' {
				return false
			}
		case 'z', 'Z':
			if d < '1' || d > '9' {
				return false
			}
		case 'n', 'N':
			if d < '2' || d > '9' {
				return false
			}
		default:
			if c != d {
				return false
			}
		}
		i++
	}
	return i == len(number)
}

// transferTarget is a REFER's target taken apart for the rules.
type transferTarget struct {
	tel    bool   // a tel: URI or a bare number
	host   string // sip: targets, lower case without brackets
	port   int
	user   string // the sip: user, unescaped, without parameters
	number string // the dialled number when the user (or tel:) is one, without visual separators
}

// dialString strips visual separators (RFC 3966 §5.1.1) and reports
// whether what is left is a dial string: digits, * and #, with an
// optional leading +.
func dialString(s string) (string, bool) {
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune("-.() ", r) {
			return -1
		}
		return r
	}, s)
	if s == "" || s == "+" {
		return s, false
	}
	for i, r := range s {
		if !(r >= '0' && r <= '9' || r == '*' || r == '#' || r == '+' && i == 0) {
			return s, false
		}
	}
	return s, true
}

func splitTransferTarget(target string) (transferTarget, error) {
	var t transferTarget
	target = strings.TrimSpace(target)
	lower := strings.ToLower(target)
	switch {
	case strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:"):
		var u sipmsg.Uri
		if err := sipmsg.ParseUri(target, &u); err != nil {
			return t, fmt.Errorf("%w: %q: %w", ErrTransferRefused, target, err)
		}
		user, err := url.PathUnescape(u.User)
		if err != nil {
			return t, fmt.Errorf("%w: %q: bad escape in user", ErrTransferRefused, target)
		}
		user, _, _ = strings.Cut(user, ";")
		t.user = user
		t.host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]"))
		t.port = u.Port
		if n, ok := dialString(user); ok {
			t.number = n
		}
	case strings.HasPrefix(lower, "tel:"):
		num, _, _ := strings.Cut(target[4:], ";")
		n, ok := dialString(num)
		if !ok {
			return t, fmt.Errorf("%w: %q is not a phone number", ErrTransferRefused, target)
		}
		t.tel, t.number = true, n
	default:
		n, ok := dialString(target)
		if !ok {
			return t, fmt.Errorf("%w: %q is not a phone number", ErrTransferRefused, target)
		}
		t.tel, t.number = true, n
	}
	return t, nil
}

// premiumPrefixes start numbers that cost the caller, whatever their
// length: NANP 1-900 and 1-976, and the 09 ranges of most European plans.
var premiumPrefixes = []string{"1900", "1976", "09"}

// looksPSTN reports whether a dialled number looks like a public
// telephone number rather than an extension: international (+, 00, 011),
// premium, or longer than six digits.
func looksPSTN(number string) bool {
	for _, p := range append([]string{"+", "00", "011"}, premiumPrefixes...) {
		if strings.HasPrefix(number, p) {
			return true
		}
	}
	digits := 0
	for _, r := range number {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	return digits > 6
}

// namedLooksPSTN applies looksPSTN to a user part that is not a plain
// dial string ("19005551234x", "+1900-abc"), since a PBX may strip what
// is not a digit: its leading dial characters, and its digits in all.
func namedLooksPSTN(user string) bool {
	lead := strings.IndexFunc(user, func(r rune) bool { return !strings.ContainsRune("0123456789*#+-.() ", r) })
	if lead < 0 {
		lead = len(user)
	}
	if n, _ := dialString(user[:lead]); n != "" && looksPSTN(n) {
		return true
	}
	digits := 0
	for _, r := range user {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	return digits > 6 || strings.Contains(user, "+")
}

// allowsTransfer applies the trunk's transfer rules to a REFER target:
// its transfer_targets when set, else the default (extensions on its own
// host that do not look like public numbers).
func (t *trunk) allowsTransfer(target string) error {
	tt, err := splitTransferTarget(target)
	if err != nil {
		return err
	}
	onTrunk := tt.tel || tt.host == strings.ToLower(t.host) && (tt.port == 0 || tt.port == t.port)
	if len(t.transfer) > 0 {
		for _, p := range t.transfer {
			if p.matches(tt, onTrunk) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s matches no transfer_targets pattern of trunk %s", ErrTransferRefused, target, t.cfg.Name)
	}
	switch {
	case !onTrunk:
		return fmt.Errorf("%w: %s is not on trunk %s", ErrTransferRefused, target, t.cfg.Name)
	case tt.tel && strings.HasPrefix(strings.ToLower(strings.TrimSpace(target)), "tel:"):
		return fmt.Errorf("%w: %s is a tel: URI (list it in transfer_targets to allow it)", ErrTransferRefused, target)
	case tt.number != "" && looksPSTN(tt.number), tt.number == "" && namedLooksPSTN(tt.user):
		return fmt.Errorf("%w: %s looks like a public telephone number (list it in transfer_targets to allow it)", ErrTransferRefused, target)
	case tt.number == "" && tt.user == "":
		return fmt.Errorf("%w: %s names no extension", ErrTransferRefused, target)
	}
	return nil
}

// matches applies one pattern: a number pattern to a target on the trunk
// (tel:, a bare number, or a sip: URI on the trunk's host), a URI pattern
// to a sip: target on its host.
func (p transferPattern) matches(tt transferTarget, onTrunk bool) bool {
	if p.host == "" {
		return onTrunk && tt.number != "" && matchNumber(p.user, tt.number)
	}
	if tt.tel || tt.host != p.host || p.port != 0 && tt.port != p.port {
		return false
	}
	switch {
	case p.user == "*":
		return true
	case p.numeric:
		return tt.number != "" && matchNumber(p.user, tt.number)
	}
	return tt.user == p.user
}
