package sip

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
)

// tlsName is the name a tls trunk's certificate must be valid for:
// tls_server_name when set, else the host of its URI.
func (t *trunk) tlsName() string {
	if t.cfg.TLSServerName != "" {
		return t.cfg.TLSServerName
	}
	return t.host
}

// isIPHost reports whether a trunk host is an IP address literal.
func isIPHost(h string) bool {
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	return err == nil
}

// CheckTrunkTLS reports problems that involve several trunks' TLS
// settings; each error names the key (trunks[N]....). A connection to an
// IP address does not say which address it was opened for (TLS sends no
// IP address as server name, RFC 6066 §3, and crypto/tls keeps none), so
// a tls trunk whose host is an IP address may skip verification only
// when every tls trunk does: otherwise its setting could apply to a
// connection meant for a verified trunk.
func CheckTrunkTLS(trunks []TrunkConfig) error {
	var errs []error
	allSkip := true
	for _, t := range trunks {
		if t.transportName() == "tls" && !t.TLSInsecureSkipVerify {
			allSkip = false
		}
	}
	for i, t := range trunks {
		if t.transportName() != "tls" || !t.TLSInsecureSkipVerify || allSkip {
			continue
		}
		var u sipmsg.Uri
		if err := sipmsg.ParseUri(t.URI, &u); err == nil && isIPHost(u.Host) {
			errs = append(errs, fmt.Errorf("trunks[%d].tls_insecure_skip_verify: a tls trunk whose host is an IP address may skip verification only when every tls trunk does (a connection to an IP address does not say which trunk it is for); give it a host name", i))
		}
	}
	return errors.Join(errs...)
}

// clientTLSConfig is the one TLS client configuration sipgo gets for
// every outgoing TLS connection. sipgo clones it per connection and sets
// ServerName to the destination host (transport_tls.go), so the
// handshake sends the right SNI; certificate checks are ours, per trunk,
// in verifyPeer: Go's own check is off because it would apply one policy
// to every trunk. Roots, client certificates and versions come from
// WithTLSConfig when given.
func (s *Server) clientTLSConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.clientTLS != nil {
		c = s.clientTLS.Clone()
	}
	skipAll := c.InsecureSkipVerify
	c.ServerName = ""
	c.InsecureSkipVerify = true //nolint:gosec // verifyPeer checks every connection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if skipAll {
			return nil
		}
		return s.verifyPeer(cs, c.RootCAs)
	}
	return c
}

// verifyPeer checks the certificate of a TLS connection we opened. The
// connection names its destination host in cs.ServerName; a tls trunk
// with that host decides: its tls_insecure_skip_verify skips the check
// for it alone, else the chain must lead to roots (nil: the system's)
// and the leaf be valid for its tls_server_name or host. A host no trunk
// has is checked by its own name. For an IP address (no ServerName, see
// CheckTrunkTLS) the leaf must be valid for one of the trunks that
// verify, unless every tls trunk skips verification.
func (s *Server) verifyPeer(cs tls.ConnectionState, roots *x509.CertPool) error {
	name := strings.ToLower(cs.ServerName)
	var names []string
	if name == "" {
		tlsTrunks, verified := 0, 0
		for _, tr := range s.trunkTable().order {
			if tr.transport == "tls" {
				tlsTrunks++
			}
			if !tr.cfg.TLSInsecureSkipVerify {
				if !slices.Contains(names, tr.tlsName()) {
					names = append(names, tr.tlsName())
				}
				if tr.transport == "tls" {
					verified++
				}
			}
		}
		if tlsTrunks > 0 && verified == 0 {
			return nil
		}
	} else {
		matched := false
		for _, tr := range s.trunkTable().order {
			if tr.transport != "tls" || isIPHost(tr.host) || strings.ToLower(tr.host) != name {
				continue
			}
			matched = true
			if !tr.cfg.TLSInsecureSkipVerify && !slices.Contains(names, tr.tlsName()) {
				names = append(names, tr.tlsName())
			}
		}
		switch {
		case matched && len(names) == 0:
			return nil // tls_insecure_skip_verify on this trunk, warned at start
		case !matched:
			names = []string{name}
		}
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("sip: tls: no server certificate")
	}
	if len(names) == 0 {
		return errors.New("sip: tls: no trunk identity to check an IP address's certificate against")
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("sip: tls: %w", err)
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("sip: tls: certificate is not valid for %s", strings.Join(names, ", "))
}
