//go:build e2e

package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// phoneCert writes a self-signed certificate for 127.0.0.1 and localhost:
// the certificate alone (what clients trust) and the certificate with its
// key in one PEM file (what baresip serves).
func phoneCert(t *testing.T) (caFile, certKeyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "desk phone"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	caFile, certKeyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "phone.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certKeyFile, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, certKeyFile
}

// TestTLSSRTPWithBaresip: segue call reaches baresip over SIP over TLS
// (the phone's certificate verified against a CA given the usual way,
// SSL_CERT_FILE) with SDES-SRTP, which the phone insists on
// (mediaenc=srtp-mand: a plain RTP offer would be refused). Audio goes
// both ways: the CLI records the phone's 440 Hz, the phone records the
// CLI's 1 kHz.
func TestTLSSRTPWithBaresip(t *testing.T) {
	ca, certKey := phoneCert(t)
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, 440, 0.5, 20*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src, peers.WithTLSSRTP(certKey, ca))
	addr := net.JoinHostPort(phone.IP, strconv.Itoa(phone.TLSPort))
	path := trunkConfig(t, `  - name: secure
    uri: "sip:`+addr+`"
    transport: tls
    srtp: true
`)
	rec := filepath.Join(t.TempDir(), "heard.wav")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, segueBin, "call", "--config", path, "--trunk", "secure", "sip:1001@"+addr,
		"--tone", "1000", "--duration", "3s", "--record", rec)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+ca)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("segue call over tls: %v\n%s", err, out)
	}
	t.Logf("segue call:\n%s", out)
	if !strings.Contains(string(out), "codec PCM") {
		t.Errorf("no codec in:\n%s", out)
	}
	pcm, rate, err := audiotest.ReadWAVFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(pcm) < audiotest.Samples(rate, 2*time.Second) {
		t.Fatalf("recorded %d samples at %d Hz", len(pcm), rate)
	}
	mid := pcm[len(pcm)/4 : len(pcm)*3/4]
	if f := audiotest.PeakFrequency(mid, rate); math.Abs(f-440) > 10 {
		t.Errorf("over SRTP the CLI heard a peak at %.0f Hz, want the phone's 440", f)
	}
	if l := audiotest.Level(mid); l < -9 || l > -3 {
		t.Errorf("over SRTP the CLI heard %.1f dBFS, want about -6", l)
	}
	heard, hrate := baresipHeard(t, phone.Recordings, 500*time.Millisecond, time.Second)
	if f := audiotest.PeakFrequency(heard, hrate); math.Abs(f-1000) > 10 {
		t.Errorf("over SRTP the phone heard a peak at %.0f Hz, want the CLI's 1000", f)
	}
	if l := audiotest.Level(heard); l < -9 || l > -3 {
		t.Errorf("over SRTP the phone heard %.1f dBFS, want about -6", l)
	}
	if !strings.Contains(phone.Output(), "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)") {
		t.Errorf("baresip does not report SRTP in use:\n%s", phone.Output())
	}

	// The phone's certificate is checked: without the CA the call is not placed.
	out, err = exec.CommandContext(ctx, segueBin, "call", "--config", path, "--trunk", "secure", "sip:1001@"+addr,
		"--duration", "1s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate") {
		t.Errorf("segue call to an untrusted certificate: %v\n%s", err, out)
	}
}
