//go:build e2e

package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChurnSmoke is make soak in small: a real segue serve with SIPp
// echoing behind its trunk, two calls, three chats and two video sessions
// kept up for eight seconds, each held about 2.5 seconds and replaced. Every
// session completes (messages acked and delivered both ways, the calls'
// audio back with its marker, the camera at the console), and afterwards
// the gateway's goroutines, descriptors and UDP sockets are back to their
// baseline within a few, its heap and RSS within a few MiB and its live
// objects within 1 MiB.
func TestChurnSmoke(t *testing.T) {
	bin := e2eSegueBin(t)
	var out strings.Builder
	o := options{segueBin: bin, agentCount: 2, setupTimeout: 15 * time.Second, progress: io.Discard, churnMode: true,
		churn: churnOptions{calls: 2, chats: 3, videos: 2, duration: 8 * time.Second, session: 2500 * time.Millisecond,
			settle: 30 * time.Second, videoKbps: 300, maxLag: 250 * time.Millisecond,
			margins: margins{goroutines: 3, fds: 2, udp: 0, heap: 6 << 20, live: 1 << 20, rss: 24 << 20}}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := runChurn(ctx, o, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"call", "chat", "video"} {
		st := r.kinds[name]
		// The warm-up round and lanes of 2.5-second sessions for eight
		// seconds: at least two sessions per lane, however slow set-ups are.
		if lanes := map[string]int{"call": 2, "chat": 3, "video": 2}[name]; st.ok < 2*lanes {
			t.Errorf("%s sessions: %d completed, want at least %d", name, st.ok, 2*lanes)
		}
		if st.ok != st.started {
			t.Errorf("%s sessions: %d of %d failed: %v", name, st.started-st.ok, st.started, st.failures)
		}
	}
	if r.videoRecvd == 0 {
		t.Error("no video reached the consoles")
	}
	for _, e := range r.excess {
		t.Errorf("not back to baseline: %s", e)
	}
	if r.peak.udp <= r.base.udp || r.peak.goroutines <= r.base.goroutines {
		t.Errorf("the peak (%s) is not above the baseline (%s): the gateway's figures were not read under load", r.peak, r.base)
	}
	if r.diffErr != nil {
		t.Errorf("heap profile diff: %v", r.diffErr)
	}
}

// e2eSegueBin returns the gateway binary under test: $SEGUE_E2E_BIN, or
// one built for the test as test/ builds it, so that the build cache
// serves both.
func e2eSegueBin(t *testing.T) string {
	if bin := os.Getenv("SEGUE_E2E_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "segue")
	build := exec.Command("go", "build", "-o", bin, "./cmd/segue")
	build.Dir = moduleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build segue: %v\n%s", err, out)
	}
	return bin
}
