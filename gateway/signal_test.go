package gateway

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segue-rtc/segue/webrtc"
)

// TestSignalBudget: a burst of signalBurst frames, then signalRate a
// second; a dropped frame is told at most once a second.
func TestSignalBudget(t *testing.T) {
	var b signalBudget
	t0 := time.Unix(1000, 0)
	for i := range signalBurst {
		if ok, _ := b.take(t0); !ok {
			t.Fatalf("frame %d of the burst dropped", i+1)
		}
	}
	ok, tell := b.take(t0)
	if ok || !tell {
		t.Fatalf("past the burst: ok %v tell %v, want dropped and told", ok, tell)
	}
	if ok, tell := b.take(t0.Add(10 * time.Millisecond)); ok || tell {
		t.Fatalf("again within the second: ok %v tell %v, want dropped silently", ok, tell)
	}
	// A second later signalRate frames are allowed, and no more.
	t1 := t0.Add(time.Second)
	for i := range signalRate {
		if ok, _ := b.take(t1); !ok {
			t.Fatalf("frame %d after a second dropped", i+1)
		}
	}
	if ok, tell := b.take(t1); ok || !tell {
		t.Fatalf("past the refill: ok %v tell %v", ok, tell)
	}
	// A long pause refills the burst, not more.
	t2 := t1.Add(time.Hour)
	for i := range signalBurst {
		if ok, _ := b.take(t2); !ok {
			t.Fatalf("frame %d after a pause dropped", i+1)
		}
	}
	if ok, _ := b.take(t2); ok {
		t.Fatal("the burst grew past signalBurst")
	}
}

func TestSignallingFrames(t *testing.T) {
	for _, typ := range []string{"rtc.offer", "rtc.answer", "rtc.candidate", "video.start", "media.join"} {
		if !signallingFrame(typ) {
			t.Errorf("%s not metered", typ)
		}
	}
	for _, typ := range []string{"message", "typing", "ping", "voice.hangup", "read"} {
		if signallingFrame(typ) {
			t.Errorf("%s metered", typ)
		}
	}
}

// TestRefusalErrors: what a peer refuses becomes the error frame the
// browser gets, saying why.
func TestRefusalErrors(t *testing.T) {
	tests := []struct {
		err         error
		code        string
		status      int
		msg         string
		retryAfter  int
		passThrough bool
	}{
		{err: &webrtc.LimitError{Reason: webrtc.SDPMediaSections, Detail: "360 media sections; at most 64"}, code: "bad_offer", status: 400, msg: "360 media sections; at most 64"},
		{err: fmt.Errorf("wrapped: %w", &webrtc.LimitError{Reason: webrtc.SDPTooLarge, Detail: "too big"}), code: "too_large", status: 413, msg: "too big"},
		{err: fmt.Errorf("%w (retry in 3s)", webrtc.ErrRenegotiationRate), code: "rate_limited", status: 429, retryAfter: 10},
		{err: webrtc.ErrTooManyCandidates, code: "too_many_candidates", status: 400},
		{err: fmt.Errorf("%w: x", webrtc.ErrBadCandidate), code: "bad_frame", status: 400},
		{err: webrtc.ErrGlare, passThrough: true},
	}
	for _, tt := range tests {
		got := refusal(tt.err, "bad_offer")
		if tt.passThrough {
			if got != tt.err {
				t.Errorf("%v changed to %v", tt.err, got)
			}
			continue
		}
		var ae *apiError
		if !errors.As(got, &ae) {
			t.Errorf("%v: %v is not an API error", tt.err, got)
			continue
		}
		if ae.Code != tt.code || ae.Status != tt.status || (tt.msg != "" && ae.Message != tt.msg) || ae.RetryAfter != tt.retryAfter {
			t.Errorf("%v: %+v, want %s %d %q retry %d", tt.err, ae, tt.code, tt.status, tt.msg, tt.retryAfter)
		}
	}
	if refusal(nil, "bad_offer") != nil {
		t.Error("nil became an error")
	}
}
