package demophone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// ChimeHz are the notes of the "chime" greeting, in the order played.
var ChimeHz = []float64{587, 740, 880}

// Chime timing: each note sounds for chimeNote, then chimeGap of silence.
const (
	chimeNote = 500 * time.Millisecond
	chimeGap  = 100 * time.Millisecond
	// maxCall ends a demo call that nobody hangs up.
	maxCall = 10 * time.Minute
	rate    = 8000
	frame   = rate / 50 // 20 ms
)

// Phone is the demo desk phone. Create it with New and run it with Run.
type Phone struct {
	cfg      Config
	addr     netip.AddrPort
	log      *slog.Logger
	srv      *sip.Server
	greeting transcode.PCM16

	wg       sync.WaitGroup // one goroutine per answered call
	answered atomic.Uint64
}

// New checks cfg (after ApplyDefaults), loads the greeting and builds the
// phone. It does no network I/O.
func New(cfg Config, log *slog.Logger) (*Phone, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	addr, _ := cfg.ListenAddr()
	greeting, err := loadGreeting(cfg.Greeting)
	if err != nil {
		return nil, err
	}
	sc := sip.Config{
		Listen:       []string{"udp:" + addr.String()},
		RTPPortRange: cfg.RTPPortRange,
		UserAgent:    "Segue demo phone",
	}
	sc.ApplyDefaults()
	// The one "trunk" is the gateway on this machine: only the loopback
	// sources below may call; every other request is dropped unanswered
	// (sip.scanner_silence, on by default).
	tc := sip.TrunkConfig{
		Name:             "gateway",
		URI:              "sip:" + addr.String(),
		Codecs:           []string{"PCMU", "PCMA"},
		AllowInboundFrom: []string{"127.0.0.1/32", "::1/128"},
		MaxCalls:         20,
	}
	tc.ApplyDefaults()
	p := &Phone{cfg: cfg, addr: addr, log: log, greeting: greeting}
	p.srv, err = sip.New(sc, []sip.TrunkConfig{tc}, sip.WithLogger(log), sip.WithInviteHandler(p.answer), sip.WithPortRest(time.Second))
	if err != nil {
		return nil, fmt.Errorf("demophone: %w", err)
	}
	return p, nil
}

// Run answers calls until ctx ends, then hangs up every call and waits
// for them.
func (p *Phone) Run(ctx context.Context) error {
	p.log.Info("demo phone listening: it answers with a greeting, then echoes the caller", "listen", p.addr.String(), "greeting", p.cfg.Greeting)
	err := p.srv.Run(ctx)
	p.wg.Wait()
	return err
}

// Ready is closed once the phone listens.
func (p *Phone) Ready() <-chan struct{} { return p.srv.Ready() }

// Addr is the phone's bound SIP address (UDP), valid after Ready.
func (p *Phone) Addr() netip.AddrPort { return p.srv.Addr("udp") }

// Answered is the number of calls answered so far.
func (p *Phone) Answered() uint64 { return p.answered.Load() }

// Refused is the number of requests from sources other than loopback's
// gateway addresses that were dropped.
func (p *Phone) Refused() uint64 { return p.srv.Refused() }

// answer is the phone's InviteHandler: it answers at once, whatever the
// number dialled, plays the greeting, then echoes.
func (p *Phone) answer(ctx context.Context, in *sip.InboundCall) error {
	e := &echo{}
	call, err := in.Answer(ctx, e)
	if err != nil {
		return err
	}
	p.answered.Add(1)
	log := p.log.With("call_id", in.CallID(), "user", in.User())
	log.Info("demo phone answered", "codec", call.Codec())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.serve(call, e, log)
	}()
	return nil
}

// serve plays the greeting on a 20 ms clock, then lets the echo run until
// the caller hangs up (or maxCall passes, when the phone hangs up).
func (p *Phone) serve(call *sip.Call, e *echo, log *slog.Logger) {
	in := call.AudioIn()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	limit := time.NewTimer(maxCall)
	defer limit.Stop()
	for pos := 0; pos < len(p.greeting); pos += frame {
		select {
		case <-call.Done():
			p.end(call, log)
			return
		case <-tick.C:
		}
		_ = in.WriteSample(p.greeting[pos:min(pos+frame, len(p.greeting))])
	}
	e.start(in)
	select {
	case <-call.Done():
	case <-limit.C:
		log.Info("demo call reached its time limit", "limit", maxCall)
	}
	p.end(call, log)
}

func (p *Phone) end(call *sip.Call, log *slog.Logger) {
	err := call.Close()
	if err != nil && !errors.Is(err, sip.ErrClosed) {
		log.Debug("demo call closed", "err", err)
	}
	st := call.Stats()
	log.Info("demo call ended", "cause", call.Err(), "packets_received", st.PacketsReceived, "packets_sent", st.PacketsSent)
}

// echo receives the caller's 8 kHz audio from the call's playout loop and,
// once started, sends it straight back. Until then it discards it.
type echo struct {
	to atomic.Pointer[transcode.PCMWriter]
}

func (e *echo) start(w transcode.PCMWriter) { e.to.Store(&w) }

// WriteSample sends s back to the caller once the greeting has played.
func (e *echo) WriteSample(s transcode.PCM16) error {
	if w := e.to.Load(); w != nil {
		return (*w).WriteSample(s)
	}
	return nil
}

func (e *echo) SampleRate() int { return rate }
func (e *echo) String() string  { return "demo phone echo -> RTP" }
func (e *echo) Close() error    { return nil }

// loadGreeting returns the greeting's 8 kHz audio.
func loadGreeting(g string) (transcode.PCM16, error) {
	switch g {
	case GreetingNone:
		return nil, nil
	case GreetingChime, "":
		return Chime(), nil
	}
	pcm, r, err := audiotest.ReadWAVFile(g)
	if err != nil {
		return nil, fmt.Errorf("greeting: %q: %w: %w", g, ErrGreeting, err)
	}
	if r == rate {
		return pcm, nil
	}
	var out collector
	w := transcode.Resample(&out, r)
	step := r / 50
	for i := 0; i < len(pcm); i += step {
		if err := w.WriteSample(pcm[i:min(i+step, len(pcm))]); err != nil {
			return nil, fmt.Errorf("greeting: %q: %w", g, err)
		}
	}
	return out.s, nil
}

// Chime is the "chime" greeting at 8 kHz: each note of ChimeHz for
// 500 ms, struck and fading like a bell, followed by 100 ms of silence.
func Chime() transcode.PCM16 {
	n, gap := audiotest.Samples(rate, chimeNote), audiotest.Samples(rate, chimeGap)
	out := make(transcode.PCM16, 0, len(ChimeHz)*(n+gap))
	for _, hz := range ChimeHz {
		for i := 0; i < n; i++ {
			t := float64(i) / rate
			env := math.Min(1, t/0.01) * (0.45 + 0.55*math.Exp(-t/0.3)) // strike, then fade
			if rel := float64(n-i) / rate; rel < 0.03 {
				env *= rel / 0.03 // no click at the end
			}
			out = append(out, int16(0.5*env*math.Sin(2*math.Pi*hz*t)*32767))
		}
		out = append(out, make(transcode.PCM16, gap)...)
	}
	return out
}

type collector struct{ s transcode.PCM16 }

func (c *collector) WriteSample(p transcode.PCM16) error { c.s = append(c.s, p...); return nil }
func (c *collector) SampleRate() int                     { return rate }
func (c *collector) String() string                      { return "greeting" }
func (c *collector) Close() error                        { return nil }
