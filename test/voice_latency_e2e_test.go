//go:build e2e

package test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// timedPhone is a desk phone in the test process that notes when each
// INVITE arrives and when it has sent 200 OK, then plays 440 Hz.
type timedPhone struct {
	srv     *sip.Server
	mu      sync.Mutex
	invites []time.Time
	answers []time.Time
}

func startTimedPhone(t *testing.T) *timedPhone {
	t.Helper()
	p := &timedPhone{}
	p.srv = startSIP(t, []sip.TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		sip.WithInviteHandler(func(ctx context.Context, in *sip.InboundCall) error {
			invited := time.Now()
			c, err := in.Answer(ctx, audiotest.NewRecorder(8000))
			if err != nil {
				return err
			}
			answered := time.Now()
			p.mu.Lock()
			p.invites = append(p.invites, invited)
			p.answers = append(p.answers, answered)
			p.mu.Unlock()
			go func() {
				tone := audiotest.Tone(8000, deskToneHz, 0.5, 20*time.Millisecond)
				tk := time.NewTicker(20 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-c.Done():
						return
					case <-tk.C:
						_ = c.AudioIn().WriteSample(tone)
					}
				}
			}()
			return nil
		}))
	return p
}

func (p *timedPhone) call(i int) (invited, answered time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i >= len(p.invites) {
		return time.Time{}, time.Time{}, false
	}
	return p.invites[i], p.answers[i], true
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

// TestVoiceSetupLatency measures, over several calls from the widget on
// loopback, the time from the mic click to the INVITE at the PBX, and
// from the PBX's 200 OK to the first audible sample at the page (an
// AnalyserNode polled every few ms). SEGUE_VOICE_CALLS sets the number of
// calls (default 5; BENCHMARKS.md uses 20).
func TestVoiceSetupLatency(t *testing.T) {
	n := 5
	if v, err := strconv.Atoi(os.Getenv("SEGUE_VOICE_CALLS")); err == nil && v > 0 {
		n = v
	}
	phone := startTimedPhone(t)
	hs := newHostSite(t)
	addr := phone.srv.Addr("udp").String()
	// Many calls in one conversation: past the default
	// limits.calls_per_conversation_per_hour.
	hs.startGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: addr}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + addr}},
	}, withYAML("", "", "", "  calls_per_ip_per_hour: 0\n  calls_per_conversation_per_hour: 0\n"))
	customer, _ := openShopWidget(t, hs, "customer", "support", "", "Timing calls")

	type times struct {
		Clicked int64 `json:"clicked"`
		Heard   int64 `json:"heard"`
	}
	var toInvite, toAudio []time.Duration
	for i := 0; i < n; i++ {
		tm := call[times](customer, asyncFn("", `const sleep = (d) => new Promise((r) => setTimeout(r, d));
const a = root().querySelector('[data-testid="remote-audio"]');
const clicked = Date.now();
q('voice-start').click();
while (!a.srcObject) { if (Date.now() - clicked > 10000) return {clicked, heard: 0}; await sleep(1); }
const ctx = window.__benchCtx ??= new AudioContext();
await ctx.resume();
const src = ctx.createMediaStreamSource(a.srcObject);
const an = ctx.createAnalyser();
an.fftSize = 256;
src.connect(an);
const td = new Float32Array(an.fftSize);
while (Date.now() - clicked < 10000) {
  an.getFloatTimeDomainData(td);
  let m = 0;
  for (const v of td) m = Math.max(m, Math.abs(v));
  if (m > 0.05) { src.disconnect(); return {clicked, heard: Date.now()}; }
  await sleep(1);
}
src.disconnect();
return {clicked, heard: 0};`))
		if tm.Heard == 0 {
			t.Fatalf("call %d: no audio at the page within 10 s", i+1)
		}
		invited, answered, ok := phone.call(i)
		if !ok {
			t.Fatalf("call %d: the phone saw no INVITE", i+1)
		}
		toInvite = append(toInvite, invited.Sub(time.UnixMilli(tm.Clicked)))
		toAudio = append(toAudio, time.UnixMilli(tm.Heard).Sub(answered))
		customer.waitCall("connected")
		customer.click("hangup")
		customer.waitCall("ended")
		waitJS[bool](customer, "the mic button again", fn("", `const b = q('voice-start'); return !b.hidden && !b.disabled;`))
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	t.Logf("%d calls: mic click -> INVITE at the PBX: p50 %.0f ms, p95 %.0f ms, max %.0f ms",
		n, ms(percentile(toInvite, 0.5)), ms(percentile(toInvite, 0.95)), ms(slices.Max(toInvite)))
	t.Logf("%d calls: 200 OK -> first audio at the page: p50 %.0f ms, p95 %.0f ms, max %.0f ms",
		n, ms(percentile(toAudio, 0.5)), ms(percentile(toAudio, 0.95)), ms(slices.Max(toAudio)))
	// Loose bounds: a regression to seconds fails, machine noise does not.
	if p := percentile(toInvite, 0.5); p > 2*time.Second {
		t.Errorf("mic click -> INVITE p50 is %v", p)
	}
	if p := percentile(toAudio, 0.5); p > 2*time.Second {
		t.Errorf("200 OK -> first audio p50 is %v", p)
	}
}
