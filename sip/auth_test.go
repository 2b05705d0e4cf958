package sip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

func TestInboundDigestAuth(t *testing.T) {
	users := make(chan string, 4)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", Username: "pbx", Password: "pw", InboundAuth: true}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			users <- in.User()
			c, err := in.Answer(ctx, nil)
			if err != nil {
				return err
			}
			go func() { <-c.Done(); c.Close() }()
			return nil
		}))
	p := newIdlePeer(t)
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dcc.ReadBye(req, tx) },
	})
	call := func(user, pass string) (*sipgo.DialogClientSession, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		target := sipmsg.Uri{Scheme: "sip", User: "conv-3", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
		dc, err := dcc.Invite(ctx, target, p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"))
		if err != nil {
			return nil, err
		}
		if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{Username: user, Password: pass}); err != nil {
			return nil, err
		}
		return dc, dc.Ack(ctx)
	}
	for _, bad := range [][2]string{{"", ""}, {"pbx", "wrong"}, {"other", "pw"}} {
		_, err := call(bad[0], bad[1])
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != 401 {
			t.Errorf("credentials %q: %v, want 401", bad, err)
		}
	}
	dc, err := call("pbx", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if u := <-users; u != "conv-3" {
		t.Errorf("user %q", u)
	}
	if len(users) != 0 {
		t.Error("handler ran for an unauthenticated INVITE")
	}
	if err := dc.Bye(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slot released", func() bool { return s.ActiveCalls() == 0 })
}

func TestNonceExpiry(t *testing.T) {
	k := newNonceKey()
	now := time.Now()
	n := k.nonce(now)
	if !k.valid(n, now.Add(time.Minute)) {
		t.Error("fresh nonce refused")
	}
	if k.valid(n, now.Add(nonceLife+time.Minute)) {
		t.Error("stale nonce accepted")
	}
	if k.valid(n+"0", now) || newNonceKey().valid(n, now) {
		t.Error("forged nonce accepted")
	}
}
