package sip

import (
	"context"
	"errors"
	"testing"
	"time"
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
