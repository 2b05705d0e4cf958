package sip

import (
	"context"
	"crypto/tls"

	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// CheckStep is one step of a trunk check.
type CheckStep struct {
	Name     string // resolve, connect, options, register, unregister
	OK       bool
	Skipped  bool
	Detail   string
	Duration time.Duration
	Err      error
}

// CheckReport is the outcome of CheckTrunk.
type CheckReport struct {
	Trunk string
	Steps []CheckStep
}

// OK reports whether no step failed.
func (r *CheckReport) OK() bool {
	for _, s := range r.Steps {
		if !s.OK && !s.Skipped {
			return false
		}
	}
	return true
}

// WriteTo prints each step with its timing and a verdict line.
func (r *CheckReport) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "trunk %s\n", r.Trunk)
	for _, s := range r.Steps {
		mark := "ok  "
		switch {
		case s.Skipped:
			mark = "skip"
		case !s.OK:
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  [%s] %-10s %8s  %s", mark, s.Name, s.Duration.Round(time.Millisecond), s.Detail)
		if s.Err != nil {
			fmt.Fprintf(&b, ": %v", s.Err)
		}
		b.WriteString("\n")
	}
	if r.OK() {
		fmt.Fprintf(&b, "verdict: trunk %s is usable\n", r.Trunk)
	} else {
		fmt.Fprintf(&b, "verdict: trunk %s is NOT usable\n", r.Trunk)
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// CheckTrunk checks one trunk the way "segue trunk check NAME" reports
// it: resolve the host, connect (TCP and TLS handshakes included), send
// OPTIONS, and REGISTER then un-register when the trunk registers. It
// runs its own short-lived user agent on ephemeral ports, so it works
// beside a running gateway. cfg gives public_address and the RTP range.
func CheckTrunk(ctx context.Context, cfg Config, tc TrunkConfig, log *slog.Logger) (*CheckReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tc.ApplyDefaults()
	if err := tc.Validate(); err != nil {
		return nil, fmt.Errorf("sip: trunk %s: %w", tc.Name, err)
	}
	tr, err := newTrunk(tc)
	if err != nil {
		return nil, err
	}
	rep := &CheckReport{Trunk: tc.Name}
	step := func(name string, f func() (string, error)) bool {
		start := time.Now()
		detail, err := f()
		rep.Steps = append(rep.Steps, CheckStep{Name: name, OK: err == nil, Detail: detail, Duration: time.Since(start), Err: err})
		return err == nil
	}
	skip := func(name, why string) {
		rep.Steps = append(rep.Steps, CheckStep{Name: name, Skipped: true, Detail: why})
	}

	var ips []string
	if !step("resolve", func() (string, error) {
		rctx, stop := context.WithTimeout(ctx, 5*time.Second)
		defer stop()
		addrs, err := net.DefaultResolver.LookupHost(rctx, tr.host)
		ips = addrs
		return fmt.Sprintf("%s -> %s", tr.host, strings.Join(addrs, ", ")), err
	}) {
		return rep, nil
	}
	if !step("connect", func() (string, error) {
		target := net.JoinHostPort(ips[0], fmt.Sprint(tr.port))
		d := net.Dialer{Timeout: 5 * time.Second}
		switch tr.transport {
		case "udp":
			c, err := d.DialContext(ctx, "udp", target)
			if err != nil {
				return target, err
			}
			c.Close()
			return "udp " + target + " (connectionless: reachability shows in OPTIONS)", nil
		case "tcp":
			c, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				return "tcp " + target, err
			}
			c.Close()
			return "tcp " + target + " connected", nil
		default:
			c, err := tls.DialWithDialer(&d, "tcp", target, &tls.Config{ServerName: tr.tlsName(), InsecureSkipVerify: tc.TLSInsecureSkipVerify, MinVersion: tls.VersionTLS12}) //nolint:gosec // opt-in per trunk
			if err != nil {
				return "tls " + target, err
			}
			st := c.ConnectionState()
			c.Close()
			detail := fmt.Sprintf("tls %s handshake ok (%s)", target, tls.VersionName(st.Version))
			if len(st.PeerCertificates) > 0 {
				detail += ", certificate " + st.PeerCertificates[0].Subject.CommonName
			}
			if tc.TLSInsecureSkipVerify {
				detail += ", NOT verified (tls_insecure_skip_verify)"
			}
			return detail, nil
		}
	}) {
		return rep, nil
	}

	s, stop, err := startTemp(ctx, cfg, tc, log)
	if err != nil {
		return nil, err
	}
	defer stop()
	t := s.trunkTable().byName[tc.Name]
	step("options", func() (string, error) {
		rtt, err := s.ping(ctx, t)
		return fmt.Sprintf("round trip %s", rtt.Round(time.Millisecond)), err
	})
	if !tc.Register {
		skip("register", "register is false for this trunk")
		return rep, nil
	}
	reg := &registration{callID: newCallID(), cseq: 1, fromTag: newCallID()[:8]}
	if step("register", func() (string, error) {
		granted, err := s.register(ctx, t, reg, tc.RegisterExpiry)
		return fmt.Sprintf("as %s, granted %d s", tc.Username, granted), err
	}) {
		step("unregister", func() (string, error) {
			_, err := s.register(ctx, t, reg, 0)
			return "binding removed", err
		})
	}
	return rep, nil
}

// startTemp runs a Server for one trunk on an ephemeral port of the
// trunk's transport, without registering or keepalives.
func startTemp(ctx context.Context, cfg Config, tc TrunkConfig, log *slog.Logger) (*Server, func(), error) {
	tc.Register, tc.OptionsInterval = false, 0
	tmp := cfg
	tmp.ApplyDefaults()
	tr := strings.ToLower(tc.Transport)
	if tr == "tls" {
		tr = "tcp" // outbound TLS needs no listener; replies come on the connection
	}
	tmp.Listen = []string{tr + ":0.0.0.0:0"}
	s, err := New(tmp, []TrunkConfig{tc}, WithLogger(log), WithPortRest(0))
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		return nil, nil, err
	}
	var once sync.Once
	return s, func() { once.Do(func() { cancel(); <-done }) }, nil
}

// TestCallOptions configure PlaceTestCall ("segue call").
type TestCallOptions struct {
	Trunk  string
	Target string
	// Play is 8 kHz audio to send; when empty, ToneHz (if > 0) is sent,
	// else silence.
	Play        transcode.PCM16
	ToneHz      float64
	DTMF        string
	Duration    time.Duration // how long to stay connected (default 10 s)
	DisplayName string
	Headers     map[string]string
	// Progress, when set, gets each provisional response.
	Progress func(Progress)
}

// TestCallReport is what PlaceTestCall heard and measured.
type TestCallReport struct {
	Codec       string
	AnswerAfter time.Duration
	Stats       MediaStats
	// Heard is the far end's audio, 8 kHz.
	Heard transcode.PCM16
	// LevelDBFS is the RMS level of Heard relative to a full-scale sine.
	LevelDBFS float64
	// PeakHz is the strongest frequency in Heard (100-3900 Hz).
	PeakHz float64
	// HangupCause is set when the far end ended the call first.
	HangupCause error
}

// WriteTo prints the report the way "segue call" shows it.
func (r *TestCallReport) WriteTo(w io.Writer) (int64, error) {
	st := r.Stats
	s := fmt.Sprintf("answered after %s, codec %s\nrtp: sent %d packets, received %d, lost %d, late %d, foreign %d, jitter %.1f ms, rtcp %d/%d\nheard: %.1f s, level %.1f dBFS, peak %.0f Hz\n",
		r.AnswerAfter.Round(time.Millisecond), r.Codec, st.PacketsSent, st.PacketsReceived, st.PacketsLost, st.PacketsLate, st.PacketsForeign, st.JitterMs, st.RTCPSent, st.RTCPReceived,
		float64(len(r.Heard))/8000, r.LevelDBFS, r.PeakHz)
	if r.HangupCause != nil {
		s += fmt.Sprintf("far end hung up: %v\n", r.HangupCause)
	}
	n, err := io.WriteString(w, s)
	return int64(n), err
}

// PlaceTestCall places a real call through a trunk, as "segue call"
// does: it carries the context headers, plays audio, sends DTMF, records
// what comes back and measures it. It runs its own user agent on an
// ephemeral port.
func PlaceTestCall(ctx context.Context, cfg Config, trunks []TrunkConfig, o TestCallOptions, log *slog.Logger) (*TestCallReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tc *TrunkConfig
	for i := range trunks {
		if trunks[i].Name == o.Trunk {
			tc = &trunks[i]
		}
	}
	if tc == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTrunk, o.Trunk)
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	t := *tc
	t.ApplyDefaults()
	s, stop, err := startTemp(ctx, cfg, t, log)
	if err != nil {
		return nil, err
	}
	defer stop()
	heard := &pcmBuffer{}
	start := time.Now()
	call, err := s.Dial(ctx, o.Trunk, o.Target, DialOptions{DisplayName: o.DisplayName, Headers: o.Headers, AudioOut: heard, OnProgress: o.Progress})
	if err != nil {
		return nil, err
	}
	defer call.Close()
	rep := &TestCallReport{Codec: call.Codec(), AnswerAfter: time.Since(start)}

	play := o.Play
	if len(play) == 0 && o.ToneHz > 0 {
		play = audiotest.Tone(8000, o.ToneHz, 0.5, o.Duration)
	}
	end := time.NewTimer(o.Duration)
	defer end.Stop()
	tick := time.NewTicker(frameDuration)
	defer tick.Stop()
	dtmfSent := o.DTMF == ""
	pos := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end.C:
			break loop
		case <-call.Done():
			rep.HangupCause = call.Err()
			break loop
		case <-tick.C:
		}
		if pos < len(play) {
			n := min(frameSamples, len(play)-pos)
			_ = call.AudioIn().WriteSample(play[pos : pos+n])
			pos += n
		}
		if !dtmfSent && time.Since(start) > rep.AnswerAfter+time.Second {
			dtmfSent = true
			go func() { _ = call.SendDTMF(ctx, o.DTMF) }()
		}
	}
	rep.Stats = call.Stats()
	rep.Heard = heard.samples()
	rep.LevelDBFS, rep.PeakHz = measure(rep.Heard)
	if err := call.Close(); err != nil && rep.HangupCause == nil {
		log.Warn("hangup", "error", err)
	}
	return rep, nil
}

// measure returns the RMS level (dBFS, a full-scale sine at 0) and the
// strongest frequency of s.
func measure(s transcode.PCM16) (level, peak float64) {
	if len(s) == 0 {
		return math.Inf(-1), 0
	}
	return audiotest.Level(s), audiotest.PeakFrequency(s, 8000)
}

// pcmBuffer is a PCM writer that keeps everything written to it.
type pcmBuffer struct {
	mu sync.Mutex
	s  transcode.PCM16
}

func (b *pcmBuffer) WriteSample(p transcode.PCM16) error {
	b.mu.Lock()
	b.s = append(b.s, p...)
	b.mu.Unlock()
	return nil
}
func (b *pcmBuffer) SampleRate() int { return 8000 }
func (b *pcmBuffer) String() string  { return "buffer" }
func (b *pcmBuffer) Close() error    { return nil }
func (b *pcmBuffer) samples() transcode.PCM16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append(transcode.PCM16(nil), b.s...)
}
