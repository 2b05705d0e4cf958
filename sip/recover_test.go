package sip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// TestEndDialogFromAnotherServer ends calls with the dialog a call
// recorded, sent by a second server with the same trunk, as a gateway
// restarted after a crash would: the far end takes the BYE as the
// call's own, whichever side placed the call.
func TestEndDialogFromAnotherServer(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fromCaller: the caller's dialog is recorded and the callee must
		// hear the BYE; otherwise the other way round.
		fromCaller bool
	}{
		{"caller-side dialog", true},
		{"callee-side dialog", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inbound := make(chan *Call, 1)
			a, b := twoServers(t, nil, nil, func(ctx context.Context, in *InboundCall) error {
				c, err := in.Answer(ctx, nil)
				if err != nil {
					return err
				}
				inbound <- c
				return nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			call, err := a.Dial(ctx, "pbx", "sip:conv-1@127.0.0.1", DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			bc := <-inbound
			defer bc.Close()
			ours, theirs, trunk := call, bc, TrunkConfig{Name: "pbx", URI: "sip:" + b.Addr("udp").String(), AllowInboundFrom: []string{"127.0.0.1/32"}}
			if !tc.fromCaller {
				ours, theirs, trunk = bc, call, TrunkConfig{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}
			}
			d := ours.Dialog()
			if d.CallID != ours.ID() || d.LocalTag == "" || d.RemoteTag == "" || d.Trunk != trunk.Name {
				t.Fatalf("dialog: %+v", d)
			}
			restarted := startServer(t, []TrunkConfig{trunk})
			if err := restarted.EndDialog(ctx, d); err != nil {
				t.Fatalf("end dialog: %v", err)
			}
			select {
			case <-theirs.Done():
			case <-ctx.Done():
				t.Fatal("the far end's call did not end")
			}
			var he *HangupError
			if err := theirs.Err(); !errors.As(err, &he) && !errors.Is(err, ErrRemoteHangup) {
				t.Fatalf("far end's call ended with %v, want a remote hangup", err)
			}
			// A dialog the far end no longer knows is gone all the same (481).
			if err := restarted.EndDialog(ctx, d); err != nil {
				t.Fatalf("second end dialog: %v", err)
			}
		})
	}
}

func TestEndDialogRefusesAnIncompleteDialog(t *testing.T) {
	srv := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999"}})
	for _, d := range []Dialog{
		{Trunk: "pbx", CallID: "x", LocalTag: "a"},
		{Trunk: "pbx", CallID: "x", LocalTag: "a", RemoteTag: "b", RemoteTarget: "not a uri", LocalURI: "sip:a@b", RemoteURI: "sip:c@d"},
	} {
		if err := srv.EndDialog(context.Background(), d); !errors.Is(err, ErrBadDialog) {
			t.Errorf("%+v: %v, want ErrBadDialog", d, err)
		}
	}
	if err := srv.EndDialog(context.Background(), Dialog{Trunk: "nope"}); !errors.Is(err, ErrUnknownTrunk) {
		t.Errorf("unknown trunk: %v", err)
	}
}

// TestByeForGoesWhereTheCallsOwnWould: a recorded dialog's BYE goes to
// the first hop of the route set, or to the remote target when there is
// none (RFC 3261 §12.2.1.1), whatever address the dialog's signalling
// came from: behind a proxy that does not record-route, the remote
// target is the phone and the proxy refuses in-dialog requests.
func TestByeForGoesWhereTheCallsOwnWould(t *testing.T) {
	base := Dialog{Trunk: "pbx", Transport: "udp", CallID: "c1", LocalURI: "sip:segue@gw.test", LocalTag: "l",
		RemoteURI: "sip:1001@pbx.test", RemoteTag: "r", RemoteTarget: "sip:1001@192.0.2.10:5070", CSeq: 3}
	routed := base
	routed.RouteSet = []string{"<sip:192.0.2.1:5060;lr>", "<sip:192.0.2.2;lr>"}
	for _, tc := range []struct {
		name string
		d    Dialog
		want string
	}{
		{"no route set", base, "192.0.2.10:5070"},
		{"route set", routed, "192.0.2.1:5060"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := byeFor(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if got := req.Destination(); got != tc.want {
				t.Errorf("BYE sent to %s, want %s", got, tc.want)
			}
			if req.Recipient.String() != tc.d.RemoteTarget {
				t.Errorf("Request-URI %s, want the remote target %s", req.Recipient.String(), tc.d.RemoteTarget)
			}
		})
	}
}

// TestDialogBehindAProxyTargetsThePhone: a call whose 2xx came through a
// proxy that does not record-route (the source is the proxy, the Contact
// the phone) records a dialog whose BYE goes to the phone, as the call's
// own BYE does; the proxy would refuse it.
func TestDialogBehindAProxyTargetsThePhone(t *testing.T) {
	phone := sipmsg.Uri{Scheme: "sip", User: "1001", Host: "192.0.2.10", Port: 5070}
	inv := sipmsg.NewRequest(sipmsg.INVITE, sipmsg.Uri{Scheme: "sip", User: "1001", Host: "192.0.2.1"})
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: "segue", Host: "gw.test"}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", "l")
	inv.AppendHeader(from)
	inv.AppendHeader(&sipmsg.ToHeader{Address: inv.Recipient})
	cid := sipmsg.CallIDHeader("c1")
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sipmsg.CSeqHeader{SeqNo: 1, MethodName: sipmsg.INVITE})
	res := sipmsg.NewResponseFromRequest(inv, 200, "OK", nil)
	res.To().Params = sipmsg.NewParams()
	res.To().Params.Add("tag", "r")
	res.AppendHeader(&sipmsg.ContactHeader{Address: phone})
	res.SetSource("192.0.2.1:5060") // the proxy
	dlg := &sipgo.DialogClientSession{Dialog: sipgo.Dialog{InviteRequest: inv, InviteResponse: res}}
	c := &Call{trunk: &trunk{cfg: TrunkConfig{Name: "pbx"}, transport: "udp"}, dlg: dlg}
	bye, err := byeFor(c.Dialog())
	if err != nil {
		t.Fatal(err)
	}
	if got := bye.Destination(); got != "192.0.2.10:5070" {
		t.Fatalf("BYE sent to %s, want the phone's 192.0.2.10:5070", got)
	}
}
