package gateway

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/mediaclock"
	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode"
)

// fakeLoad is a load source the test sets.
type fakeLoad struct {
	mu sync.Mutex
	s  loadSample
}

func (f *fakeLoad) Load() loadSample {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

func (f *fakeLoad) set(s loadSample) {
	f.mu.Lock()
	f.s = s
	f.mu.Unlock()
}

func TestLoadMonitorSmoothsLag(t *testing.T) {
	m := newLoadMonitor()
	// One late wake-up alone does not make the gateway overloaded.
	m.observeLag(100 * time.Millisecond)
	if got := m.Load().Lag; got > defaultMaxSchedulerLag {
		t.Fatalf("after one 100 ms spike the lag is %v, want at most %v", got, defaultMaxSchedulerLag)
	}
	// Lasting lag does, and it passes once the wake-ups are on time again.
	for range 40 {
		m.observeLag(30 * time.Millisecond)
	}
	if got := m.Load().Lag; got <= defaultMaxSchedulerLag || got > 30*time.Millisecond {
		t.Fatalf("after a lasting 30 ms lag the average is %v, want above %v and at most 30ms", got, defaultMaxSchedulerLag)
	}
	for range 40 {
		m.observeLag(-time.Millisecond) // early: counts as on time
	}
	if got := m.Load().Lag; got >= time.Millisecond {
		t.Fatalf("after on-time wake-ups the lag is %v, want under 1ms", got)
	}
}

func TestLoadMonitorCPUShare(t *testing.T) {
	m := newLoadMonitor()
	m.cores = 2
	var used time.Duration
	m.cpuTime = func() (time.Duration, bool) { return used, true }
	if got := m.Load().CPU; got >= 0 {
		t.Fatalf("before any measurement the CPU share is %v, want negative (unknown)", got)
	}
	t0 := time.Unix(1000, 0)
	m.observeCPU(t0)
	used = 300 * time.Millisecond
	m.observeCPU(t0.Add(cpuWindow / 2)) // too soon: no new figure
	if got := m.Load().CPU; got >= 0 {
		t.Fatalf("within the first window the CPU share is %v, want still unknown", got)
	}
	used = 1500 * time.Millisecond
	m.observeCPU(t0.Add(time.Second)) // 1.5 s of CPU in 1 s on 2 cores
	if got := m.Load().CPU; math.Abs(got-0.75) > 1e-9 {
		t.Fatalf("CPU share %v, want 0.75", got)
	}
	m.cpuTime = func() (time.Duration, bool) { return 0, false }
	m.observeCPU(t0.Add(3 * time.Second))
	if got := m.Load().CPU; math.Abs(got-0.75) > 1e-9 {
		t.Fatalf("with no CPU figure from the platform the share changed to %v", got)
	}
}

// TestLoadMonitorMediaLate checks the share of the media clock's frame
// times served late over the last two seconds: it rises while the clock
// catches up or skips, ignores time without calls, and falls once the
// clock keeps time again for a whole window.
func TestLoadMonitorMediaLate(t *testing.T) {
	m := newLoadMonitor()
	var st mediaclock.Stats
	m.clock = func() mediaclock.Stats { return st }
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	m.observeClock(at(0))
	if got := m.Load().MediaLate; got != 0 {
		t.Fatalf("with no frames due the lateness is %v, want 0", got)
	}
	// One second on time: 50 frames, 50 ticks.
	st = mediaclock.Stats{Due: 50, Ticks: 50}
	m.observeClock(at(time.Second))
	if got := m.Load().MediaLate; got != 0 {
		t.Fatalf("on time the lateness is %v, want 0", got)
	}
	// The next second the process gets a third of the CPU it needs: the
	// clock wakes for 20 of its 50 frames and serves the rest late.
	st = mediaclock.Stats{Due: 100, Ticks: 70}
	m.observeClock(at(2 * time.Second))
	if got := m.Load().MediaLate; math.Abs(got-0.3) > 1e-9 {
		t.Fatalf("after a second short of CPU the lateness is %v, want 0.3 (30 late of 100 due)", got)
	}
	// A second with no call: nothing falls due, the window still holds
	// the late second.
	m.observeClock(at(3 * time.Second))
	if got := m.Load().MediaLate; math.Abs(got-0.6) > 1e-9 {
		t.Fatalf("with the late second in the window the lateness is %v, want 0.6 (30 late of 50 due)", got)
	}
	// Two seconds on time again: the late second leaves the window.
	st = mediaclock.Stats{Due: 150, Ticks: 120}
	m.observeClock(at(4 * time.Second))
	st = mediaclock.Stats{Due: 200, Ticks: 170}
	m.observeClock(at(5 * time.Second))
	if got := m.Load().MediaLate; got != 0 {
		t.Fatalf("after two seconds on time the lateness is %v, want 0", got)
	}
	if n := len(m.clockSeen); n > 3 {
		t.Errorf("the monitor keeps %d samples for a 2 s window sampled each second, want at most 3", n)
	}
}

// TestCallsRefusedPastCapacity: past limits.max_calls or under load, a new
// call the customer asks for gets busy with retry_after, a PBX's INVITE gets
// 503 with Retry-After, the agent sees a voice.refused event, the chat goes
// on, and the call in progress keeps its audio; once capacity is back (the
// first call ended, or the load fell) the next call starts.
func TestCallsRefusedPastCapacity(t *testing.T) {
	zero := time.Duration(0)
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		load   loadSample
		reason string // "" when the call must be admitted
	}{
		{"max_calls", func(c *Config) { c.Limits.MaxCalls = 1 }, loadSample{CPU: -1}, "max_calls"},
		{"scheduler_lag", nil, loadSample{Lag: 30 * time.Millisecond, CPU: -1}, "scheduler_lag"},
		{"cpu", func(c *Config) { c.Limits.MaxCPUPercent = 90 }, loadSample{CPU: 0.95}, "cpu"},
		{"media_late", nil, loadSample{MediaLate: 0.25, CPU: -1}, "media_late"},
		{"media_late_under_limit", nil, loadSample{MediaLate: 0.05, CPU: -1}, ""},
		{"media_late_check_off", func(c *Config) { off := 0; c.Limits.MaxMediaLatePercent = &off }, loadSample{MediaLate: 1, CPU: -1}, ""},
		{"lag_check_off", func(c *Config) { c.Limits.MaxSchedulerLag = &zero }, loadSample{Lag: time.Second, CPU: -1}, ""},
		{"cpu_check_off", nil, loadSample{CPU: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var phonesUp []*fakeLeg
			phones := &fakePhones{result: func() (*fakeLeg, error) {
				leg := newFakeLeg()
				mu.Lock()
				phonesUp = append(phonesUp, leg)
				mu.Unlock()
				return leg, nil
			}}
			peers := &fakePeers{}
			load := &fakeLoad{}
			e := voiceServer(t, phones, peers, tc.mutate, withLoad(load))
			alice := e.login("alice")
			aws, _ := e.agentWS(alice)

			_, annToken := e.startChat("Ann")
			ann := e.customerWS(annToken)
			ann.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
			waitCall(t, ann, callConnected)
			annBrowser := peers.last()

			beaID, beaToken := e.startChat("Bea")
			aws.send(map[string]any{"type": "accept", "conversation_id": beaID})
			aws.expect("history")
			bea := e.customerWS(beaToken)
			load.set(tc.load)
			bea.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
			if tc.reason == "" {
				waitCall(t, bea, callConnected)
				return
			}
			f := bea.expect("error")
			if code, retry := decode[string](t, f["code"]), decode[int](t, f["retry_after"]); code != "busy" || retry != 60 {
				t.Fatalf("refused call start: code %q retry_after %d, want busy and 60", code, retry)
			}
			if msg := decode[string](t, f["message"]); !strings.Contains(msg, "all lines are busy") {
				t.Fatalf("refused call start says %q", msg)
			}
			if m := aws.expect("message"); !strings.Contains(string(m["message"]), `"voice.refused"`) {
				t.Fatalf("the agent got %s, want the voice.refused event", m["message"])
			}
			if !strings.Contains(e.metricsText(), `segue_calls_refused_total{reason="`+tc.reason+`"} 1`) {
				t.Fatalf("metrics do not count the refusal as %s", tc.reason)
			}
			// The PBX calling into the conversation is refused for the same reason.
			var se *sip.StatusError
			if err := e.srv.handleInvite(context.Background(), &fakeInvite{user: "conv-" + beaID}); !errors.As(err, &se) ||
				se.Code != 503 || se.RetryAfter != 60 {
				t.Fatalf("INVITE past capacity: %v, want 503 with Retry-After 60", err)
			}
			// A second refusal within the minute adds nothing to the transcript.
			bea.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
			bea.expect("error")

			// The chat goes on.
			bea.send(map[string]any{"type": "message", "id": "m1", "text": "still there?"})
			bea.expect("ack")
			if m := aws.expect("message"); !strings.Contains(string(m["message"]), "still there?") {
				t.Fatalf("the agent got %s, want the customer's message (and no second voice.refused)", m["message"])
			}

			// Ann's call was not touched: the phone's audio still reaches her browser.
			mu.Lock()
			annPhone := phonesUp[0]
			mu.Unlock()
			before := annBrowser.in.len()
			annPhone.play(make(transcode.PCM16, 160))
			waitUntil(t, "the phone's audio in Ann's browser", func() bool { return annBrowser.in.len() > before })
			if annPhone.closed() {
				t.Fatal("the call in progress was hung up")
			}

			// Capacity comes back: the first call ends and the load falls.
			annPhone.hangup(sip.ErrRemoteHangup)
			waitCall(t, ann, callEnded)
			load.set(loadSample{CPU: -1})
			bea.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
			waitCall(t, bea, callConnected)
		})
	}
}
