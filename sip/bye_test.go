package sip

import (
	"context"
	"errors"
	"testing"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// TestCloseIgnoredBye checks that hanging up on a far end that never
// answers its BYE ends within the BYE's own timeout, with an error that
// says so, and still releases the call.
func TestCloseIgnoredBye(t *testing.T) {
	byes := make(chan struct{}, 1)
	// The fake answers the BYE only once the test lets it, after Close
	// gave up: that ends the fake's own dialog.
	release := make(chan *sipgo.DialogServerSession, 1)
	p, dialogs := answeringPeerWith(t, SendRecv, nil, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			// The BYE may be sent again (RFC 3261 Timer E): every copy
			// waits for the release and none blocks on the counter.
			select {
			case byes <- struct{}{}:
			default:
			}
			ds := <-release
			release <- ds
			_ = ds.ReadBye(req, tx)
		},
	})
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds := <-dialogs
	err = call.Close()
	release <- ds
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the BYE's deadline", err)
	}
	select {
	case <-byes:
	default:
		t.Error("the far end got no BYE")
	}
	waitFor(t, "call slot released", func() bool { return s.ActiveCalls() == 0 })
}
