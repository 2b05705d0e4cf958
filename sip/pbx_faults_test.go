package sip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// TestDialUnreachablePBX: a trunk whose host takes the INVITE and never
// answers (down, or dropping the packets) fails with ErrUnreachable after
// its invite_timeout, not Timer B's 32 s, and frees its call slot. A PBX
// that answers 100 Trying at once and its final response later than the
// invite_timeout is not unreachable: any response stops the clock.
func TestDialUnreachablePBX(t *testing.T) {
	t.Run("silent", func(t *testing.T) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		var invites atomic.Int32
		go func() {
			buf := make([]byte, 65535)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if bytes.HasPrefix(buf[:n], []byte("INVITE ")) {
					invites.Add(1)
				}
			}
		}()
		tc := TrunkConfig{Name: "pbx", URI: "sip:" + pc.LocalAddr().String(), InviteTimeout: time.Second}
		s := startServer(t, []TrunkConfig{tc})
		start := time.Now()
		_, err = s.Dial(context.Background(), "pbx", "1001", DialOptions{})
		t.Logf("dial returned after %v: %v", time.Since(start), err)
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
		for _, other := range []error{ErrBusy, ErrNoAnswer, ErrUnavailable, ErrRejected, ErrCancelled} {
			if errors.Is(err, other) {
				t.Errorf("%v also matches %v", err, other)
			}
		}
		if invites.Load() == 0 {
			t.Error("the INVITE never reached the silent host")
		}
		waitFor(t, "call slot released", func() bool { return s.ActiveCalls() == 0 })
	})
	t.Run("trying then busy", func(t *testing.T) {
		p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			_ = tx.Respond(sipmsg.NewResponseFromRequest(req, 100, "Trying", nil))
			time.Sleep(1500 * time.Millisecond)
			finalResponse(486, "Busy Here")(req, tx)
		}})
		tc := p.trunk("pbx")
		tc.InviteTimeout = time.Second
		s := startServer(t, []TrunkConfig{tc})
		_, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
		if !errors.Is(err, ErrBusy) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want busy", err)
		}
	})
}

// TestInviteTimeoutConfig: invite_timeout is 10s unless set, and must lie
// from 1s to Timer B's 32s.
func TestInviteTimeoutConfig(t *testing.T) {
	for _, tc := range []struct {
		set  time.Duration
		want time.Duration
		err  bool
	}{
		{0, DefaultInviteTimeout, false},
		{time.Second, time.Second, false},
		{32 * time.Second, 32 * time.Second, false},
		{500 * time.Millisecond, 0, true},
		{time.Minute, 0, true},
	} {
		c := TrunkConfig{Name: "pbx", URI: "sip:pbx.example.com", Transport: "udp", InviteTimeout: tc.set}
		err := c.Validate()
		if tc.err {
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte("invite_timeout:")) {
				t.Errorf("invite_timeout %v: error %v, want one naming invite_timeout", tc.set, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("invite_timeout %v: %v", tc.set, err)
		}
		if got := c.inviteTimeout(); got != tc.want {
			t.Errorf("invite_timeout %v reads as %v, want %v", tc.set, got, tc.want)
		}
	}
}

// TestRefreshAnswered481: a PBX that restarted mid-call answers our
// session refresh (RFC 4028 UPDATE) with 481. The call ends with
// ErrDialogLost, a cause apart from a session that merely expired, and
// sends no BYE into the dialog the PBX no longer has.
func TestRefreshAnswered481(t *testing.T) {
	var byes atomic.Int32
	p := newIdlePeer(t)
	dsc := sipgo.NewDialogServerCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			ds, err := dsc.ReadInvite(req, tx)
			if err != nil {
				t.Error(err)
				return
			}
			if err := ds.Respond(200, "OK", p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"),
				sipmsg.NewHeader("Session-Expires", "2;refresher=uac"), sipmsg.NewHeader("Require", "timer")); err != nil {
				t.Error(err)
			}
		},
		sipmsg.ACK:    func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dsc.ReadAck(req, tx) },
		sipmsg.UPDATE: finalResponse(481, "Call/Transaction Does Not Exist"),
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			byes.Add(1)
			finalResponse(481, "Call/Transaction Does Not Exist")(req, tx)
		},
	})
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, call, EventHangup)
	if !errors.Is(e.Cause, ErrDialogLost) || errors.Is(e.Cause, ErrSessionExpired) {
		t.Errorf("cause %v, want ErrDialogLost", e.Cause)
	}
	call.Close()
	if n := byes.Load(); n != 0 {
		t.Errorf("%d BYE sent into the lost dialog", n)
	}
}
