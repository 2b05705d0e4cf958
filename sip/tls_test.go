package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and ::1 and returns the
// file names and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return certFor(t, nil, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
}

func TestCallOverTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	heard := newRecorder()
	calls := make(chan *Call, 1)
	b, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"}, TLSCert: certFile, TLSKey: keyFile},
		[]TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c, err := in.Answer(ctx, heard)
			if err == nil {
				calls <- c
			}
			return err
		}))
	trunk := TrunkConfig{Name: "pbx", URI: "sip:" + b.Addr("tls").String(), Transport: "tls"}
	a := startServer(t, []TrunkConfig{trunk}, WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := a.Dial(ctx, "pbx", "sip:conv-5@127.0.0.1", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bc := <-calls
	pctx, pstop := context.WithCancel(ctx)
	go playTone(pctx, call.AudioIn(), 1000)
	waitFor(t, "audio over a TLS-signalled call", func() bool { return len(heard.Samples()) >= 4000 })
	pstop()
	if f := peakFreq(heard.Samples()[2000:]); f < 990 || f > 1010 {
		t.Errorf("peak %v", f)
	}
	if err := call.Close(); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, bc, EventHangup); !errors.Is(e.Cause, ErrRemoteHangup) {
		t.Errorf("callee cause %v", e.Cause)
	}

	// Without trusting the certificate the handshake, and so the call, fails.
	untrusting := startServer(t, []TrunkConfig{trunk})
	if _, err := untrusting.Dial(ctx, "pbx", "sip:conv-6@127.0.0.1", DialOptions{}); err == nil {
		t.Fatal("call over TLS to an untrusted certificate succeeded")
	}
}

func TestCallOverIPv6(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Fatalf("IPv6 loopback unavailable: %v", err)
	} else {
		c.Close()
	}
	calls := make(chan *Call, 1)
	heard := newRecorder()
	b, _ := startServerCfg(t, Config{Listen: []string{"udp:[::1]:0"}},
		[]TrunkConfig{{Name: "gw", URI: "sip:[::1]:5999", AllowInboundFrom: []string{"::1/128"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c, err := in.Answer(ctx, heard)
			if err == nil {
				calls <- c
			}
			return err
		}))
	a, _ := startServerCfg(t, Config{Listen: []string{"udp:[::1]:0"}}, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String()}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := a.Dial(ctx, "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	<-calls
	go playTone(ctx, call.AudioIn(), 1000)
	waitFor(t, "audio over IPv6", func() bool { return len(heard.Samples()) >= 4000 })
	if f := peakFreq(heard.Samples()[2000:]); f < 990 || f > 1010 {
		t.Errorf("peak %v", f)
	}
	if st := call.Stats(); st.Remote == "" || st.Remote[0] != '[' {
		t.Errorf("remote media %q is not IPv6", st.Remote)
	}
}

func TestCallOverTCPHungUpByCallee(t *testing.T) {
	calls := make(chan *Call, 1)
	b, _ := startServerCfg(t, Config{Listen: []string{"tcp:127.0.0.1:0"}},
		[]TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", Transport: "tcp", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c, err := in.Answer(ctx, nil)
			if err == nil {
				calls <- c
			}
			return err
		}))
	a, _ := startServerCfg(t, Config{Listen: []string{"tcp:127.0.0.1:0"}},
		[]TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("tcp").String(), Transport: "tcp"}})
	heard := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := a.Dial(ctx, "pbx", "sip:conv-8@127.0.0.1", DialOptions{AudioOut: heard})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	bc := <-calls
	go playTone(ctx, bc.AudioIn(), 440)
	waitFor(t, "audio", func() bool { return len(heard.Samples()) >= 4000 })
	// The callee hangs up: its BYE must reach the caller's advertised
	// TCP Contact.
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, call, EventHangup); !errors.Is(e.Cause, ErrRemoteHangup) {
		t.Errorf("caller cause %v", e.Cause)
	}
}
