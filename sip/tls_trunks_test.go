package sip

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certFor writes a self-signed certificate valid for dns and ips and
// returns the file names and a pool that trusts it.
func certFor(t *testing.T, dns []string, ips ...net.IP) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "segue trunk test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// tlsCallee is a PBX with a TLS listener presenting the given certificate;
// it answers every INVITE 486, which proves the handshake and the request
// got through.
type tlsCallee struct {
	srv  *Server
	hits chan string
}

func startTLSCallee(t *testing.T, certFile, keyFile string) *tlsCallee {
	t.Helper()
	c := &tlsCallee{hits: make(chan string, 8)}
	c.srv, _ = startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"}, TLSCert: certFile, TLSKey: keyFile},
		[]TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c.hits <- in.User()
			return &StatusError{Code: 486, Reason: "Busy Here"}
		}))
	return c
}

func (c *tlsCallee) port() string { return itoa(int(c.srv.Addr("tls").Port())) }

// dialReaches places a call through trunk and reports whether it reached
// the callee (486 from its handler) rather than failing at TLS.
func dialReaches(t *testing.T, s *Server, trunk string, callee *tlsCallee) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, trunk, "sip:conv-1@127.0.0.1", DialOptions{})
	if errors.Is(err, ErrBusy) {
		select {
		case <-callee.hits:
			return true
		case <-ctx.Done():
			t.Fatalf("%s: busy without reaching the callee", trunk)
		}
	}
	t.Logf("%s: %v", trunk, err)
	if len(callee.hits) > 0 {
		t.Fatalf("%s: the callee was reached, but the dial failed: %v", trunk, err)
	}
	return false
}

// TestTLSVerificationPerTrunk: two tls trunks, one verified against its
// CA, one with tls_insecure_skip_verify. Each gets its own setting: the
// verified one refuses a certificate its CA did not sign, even while the
// insecure trunk calls out, and the insecure one works with any.
func TestTLSVerificationPerTrunk(t *testing.T) {
	loopback := net.IPv4(127, 0, 0, 1)
	c1, k1, trusted := certFor(t, []string{"localhost"}, loopback)
	c2, k2, _ := certFor(t, []string{"localhost"}, loopback)
	good, rogue := startTLSCallee(t, c1, k1), startTLSCallee(t, c2, k2)
	roots := WithTLSConfig(&tls.Config{RootCAs: trusted, MinVersion: tls.VersionTLS12})

	// The verified trunk reaches the PBX its CA signed for; the insecure
	// one reaches a PBX with a certificate nobody signed.
	a := startServer(t, []TrunkConfig{
		{Name: "verified", URI: "sip:127.0.0.1:" + good.port(), Transport: "tls"},
		{Name: "lab", URI: "sip:localhost:" + rogue.port(), Transport: "tls", TLSInsecureSkipVerify: true},
	}, roots)
	if !dialReaches(t, a, "verified", good) {
		t.Error("the verified trunk did not reach the PBX with the trusted certificate")
	}
	if !dialReaches(t, a, "lab", rogue) {
		t.Error("the insecure trunk did not reach the PBX with an unsigned certificate")
	}

	// The same trunks, the addresses swapped: the verified trunk now meets
	// the unsigned certificate (a man in the middle) and must refuse it,
	// before and after the insecure trunk has made its connection.
	b := startServer(t, []TrunkConfig{
		{Name: "verified", URI: "sip:127.0.0.1:" + rogue.port(), Transport: "tls"},
		{Name: "lab", URI: "sip:localhost:" + good.port(), Transport: "tls", TLSInsecureSkipVerify: true},
	}, roots)
	if dialReaches(t, b, "verified", rogue) {
		t.Error("the verified trunk accepted a certificate its CA did not sign")
	}
	if !dialReaches(t, b, "lab", good) {
		t.Error("the insecure trunk did not reach its PBX")
	}
	if dialReaches(t, b, "verified", rogue) {
		t.Error("the verified trunk accepted an unsigned certificate after the insecure trunk connected")
	}
}

// TestTLSInsecureTrunkDoesNotLeak: with the insecure trunk listed first
// and no private roots, the verified trunk still refuses a certificate
// the system roots do not vouch for.
func TestTLSInsecureTrunkDoesNotLeak(t *testing.T) {
	loopback := net.IPv4(127, 0, 0, 1)
	c1, k1, _ := certFor(t, []string{"localhost"}, loopback)
	c2, k2, _ := certFor(t, []string{"localhost"}, loopback)
	lab, rogue := startTLSCallee(t, c1, k1), startTLSCallee(t, c2, k2)
	a := startServer(t, []TrunkConfig{
		{Name: "lab", URI: "sip:localhost:" + lab.port(), Transport: "tls", TLSInsecureSkipVerify: true},
		{Name: "verified", URI: "sip:127.0.0.1:" + rogue.port(), Transport: "tls"},
	})
	if !dialReaches(t, a, "lab", lab) {
		t.Error("the insecure trunk did not reach its PBX")
	}
	if dialReaches(t, a, "verified", rogue) {
		t.Error("the first trunk's tls_insecure_skip_verify applied to the verified trunk")
	}
}

// TestTLSVerifiedByHostName: a trunk given by host name is checked for
// that name; a certificate from the right CA for another name is
// refused, and tls_insecure_skip_verify on a trunk with another host
// changes nothing.
func TestTLSVerifiedByHostName(t *testing.T) {
	c1, k1, pool1 := certFor(t, []string{"localhost"})
	c2, k2, _ := certFor(t, []string{"pbx.segue.test"})
	named, other := startTLSCallee(t, c1, k1), startTLSCallee(t, c2, k2)
	pool := pool1.Clone()
	pool.AppendCertsFromPEM(pemOf(t, c2))
	a := startServer(t, []TrunkConfig{
		{Name: "named", URI: "sip:localhost:" + named.port(), Transport: "tls"},
		{Name: "wrong-name", URI: "sip:localhost:" + other.port(), Transport: "tls"},
		{Name: "lab", URI: "sip:pbx.invalid:5061", Transport: "tls", TLSInsecureSkipVerify: true},
	}, WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if !dialReaches(t, a, "named", named) {
		t.Error("the trunk did not reach a PBX whose certificate names its host")
	}
	if dialReaches(t, a, "wrong-name", other) {
		t.Error("a certificate for pbx.segue.test was accepted for localhost")
	}
}

// TestTLSServerName: a PBX reached by IP address whose certificate names
// it by host name is accepted with tls_server_name, and refused without.
func TestTLSServerName(t *testing.T) {
	c, k, pool := certFor(t, []string{"pbx.segue.test"})
	pbx := startTLSCallee(t, c, k)
	roots := WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	a := startServer(t, []TrunkConfig{{Name: "by-ip", URI: "sip:127.0.0.1:" + pbx.port(), Transport: "tls"}}, roots)
	if dialReaches(t, a, "by-ip", pbx) {
		t.Error("a certificate for pbx.segue.test was accepted for 127.0.0.1")
	}
	b := startServer(t, []TrunkConfig{{Name: "by-ip", URI: "sip:127.0.0.1:" + pbx.port(), Transport: "tls", TLSServerName: "pbx.segue.test"}}, roots)
	if !dialReaches(t, b, "by-ip", pbx) {
		t.Error("tls_server_name did not let the trunk reach its PBX")
	}
}

// TestTLSInsecureIPTrunkRefused: a trunk given by IP address may not skip
// verification while another tls trunk verifies (the connection could be
// the other trunk's); when every tls trunk skips, it may.
func TestTLSInsecureIPTrunkRefused(t *testing.T) {
	mixed := []TrunkConfig{
		{Name: "verified", URI: "sip:pbx.example.com", Transport: "tls"},
		{Name: "lab", URI: "sip:192.0.2.7", Transport: "tls", TLSInsecureSkipVerify: true},
	}
	for i := range mixed {
		mixed[i].ApplyDefaults()
	}
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}}
	cfg.ApplyDefaults()
	if _, err := New(cfg, mixed); err == nil || !strings.Contains(err.Error(), "trunks[1].tls_insecure_skip_verify: a tls trunk whose host is an IP address") {
		t.Errorf("mixed: %v", err)
	}
	mixed[0].TLSInsecureSkipVerify = true
	if _, err := New(cfg, mixed); err != nil {
		t.Errorf("every tls trunk insecure: %v", err)
	}
	mixed[0].TLSInsecureSkipVerify, mixed[1].URI = false, "sip:lab.example.com"
	if _, err := New(cfg, mixed); err != nil {
		t.Errorf("insecure trunk by host name: %v", err)
	}
}

func pemOf(t *testing.T, certFile string) []byte {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
