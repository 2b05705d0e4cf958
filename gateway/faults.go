package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/transcode"
)

// causeGatewayRestart is the end cause of a call that was up when the
// gateway stopped without ending it (a crash or kill -9), as the
// restarted gateway records it.
const causeGatewayRestart = "gateway_restart"

// faultMetrics count how calls fail and what the gateway recovered from.
type faultMetrics struct {
	ended     *prometheus.CounterVec
	panics    *prometheus.CounterVec
	recovered *prometheus.CounterVec
}

func newFaultMetrics(reg *prometheus.Registry) faultMetrics {
	m := faultMetrics{
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_calls_ended_total", Help: "Voice calls finished, by cause (docs/operations.md): busy, unavailable, no_answer, media_timeout, gateway_restart, ...",
		}, []string{"cause"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_panics_recovered_total", Help: "Panics recovered inside one call, which ended that call only, by where they happened.",
		}, []string{"where"}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_calls_recovered_total", Help: "Calls found unfinished in the store at start (the gateway had stopped without ending them), by what was done: bye (the PBX confirmed the BYE or no longer knew the dialog), bye_failed, no_dialog (never answered, nothing to send).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.ended, m.panics, m.recovered)
	return m
}

// dialogHolder is a phone call whose SIP dialog can be recorded, so that
// a restarted gateway can end it (sip.Call).
type dialogHolder interface {
	Dialog() sip.Dialog
}

// dialogEnder ends a recorded dialog that no call holds any more
// (sip.Server, through sipPhones).
type dialogEnder interface {
	EndDialog(ctx context.Context, d sip.Dialog) error
	Ready() <-chan struct{}
}

func (p sipPhones) EndDialog(ctx context.Context, d sip.Dialog) error { return p.srv.EndDialog(ctx, d) }
func (p sipPhones) Ready() <-chan struct{}                            { return p.srv.Ready() }

// saveDialog records an answered call's dialog beside its call record.
func (s *Server) saveDialog(v *voiceCall, phone phoneCall) {
	dh, ok := phone.(dialogHolder)
	if !ok {
		return
	}
	raw, err := json.Marshal(dh.Dialog())
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.SaveCallDialog(ctx, v.id, raw); err != nil {
		s.log.Error("voice: call dialog not saved", "call", v.id, "err", err)
	}
}

// recoverCalls cleans up after a gateway that stopped without ending its
// calls (a crash, kill -9, power loss): every call record without an end
// is closed with the cause gateway_restart and said so in the
// conversation's transcript (voice.ended or voice.failed for a call,
// video.ended for the customer's video); an answered voice call's dialog gets a BYE,
// so the desk phone hangs up instead of waiting for its session timer.
// The BYEs go out once the SIP side is up; Run waits for them on its way
// out. Calls the store shows still ringing have nothing to send: the PBX
// ends them when the INVITE transaction times out (RFC 3261 §17.1.1.2,
// §13.3.1.4).
func (s *Server) recoverCalls(ctx context.Context) error {
	calls, err := s.store.UnfinishedCalls(ctx, "")
	if err != nil {
		return err
	}
	byes := s.closeCallsLeftUp(ctx, calls)
	ender := s.enderFor(byes)
	if ender == nil {
		return nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.endDialogsLeftUp(ctx, ender, byes)
	}()
	return nil
}

// endCallsLeftUp ends the calls of conversation id that the node which
// held it left up when it died, as recoverCalls does after a restart: a
// cluster node runs it once it has taken the conversation from a dead
// node and made it live. It returns once the BYEs are answered, or ctx
// ends.
func (s *Server) endCallsLeftUp(ctx context.Context, id string) {
	calls, err := s.store.UnfinishedCalls(ctx, id)
	if err != nil {
		s.log.Error("voice: calls left up by a dead node not listed", "conv", id, "err", err)
		return
	}
	byes := s.closeCallsLeftUp(ctx, calls)
	if ender := s.enderFor(byes); ender != nil {
		s.endDialogsLeftUp(ctx, ender, byes)
	}
}

// closeCallsLeftUp closes the records of calls, which no call of this
// process holds, and returns the answered voice calls whose dialog is to
// be ended with a BYE.
func (s *Server) closeCallsLeftUp(ctx context.Context, calls []*store.CallRecord) []*store.CallRecord {
	var byes []*store.CallRecord
	for _, r := range calls {
		s.closeRecoveredCall(ctx, r)
		if r.Kind == "voice" && r.Dialog != nil {
			byes = append(byes, r)
		} else {
			s.metrics.faults.recovered.WithLabelValues("no_dialog").Inc()
		}
	}
	return byes
}

// enderFor returns what ends the dialogs of byes, or nil when there are
// none, or nothing to end them with (counted and logged).
func (s *Server) enderFor(byes []*store.CallRecord) dialogEnder {
	if len(byes) == 0 {
		return nil
	}
	ender, ok := s.phones.(dialogEnder)
	if !ok {
		s.metrics.faults.recovered.WithLabelValues("bye_failed").Add(float64(len(byes)))
		s.log.Warn("voice: calls left up by the last run cannot be ended: no SIP trunks configured", "calls", len(byes))
		return nil
	}
	return ender
}

// endDialogsLeftUp sends the BYEs of byes once the SIP side is up, one
// after the other, until ctx ends.
func (s *Server) endDialogsLeftUp(ctx context.Context, ender dialogEnder, byes []*store.CallRecord) {
	select {
	case <-ender.Ready():
	case <-ctx.Done():
		return
	}
	for _, r := range byes {
		s.endRecoveredDialog(ctx, ender, r)
	}
}

// closeRecoveredCall gives a call the last run left open its end.
func (s *Server) closeRecoveredCall(ctx context.Context, r *store.CallRecord) {
	now := time.Now().UTC()
	r.EndedAt, r.Cause = now, "The gateway restarted"
	if err := s.store.SaveCall(ctx, r); err != nil {
		s.log.Error("voice: call record not closed after restart", "call", r.ID, "err", err)
	}
	s.log.Info("voice: call left up by the last run closed", "conv", r.ConversationID, "call", r.ID, "kind", r.Kind,
		"answered", !r.AnsweredAt.IsZero(), "cause", causeGatewayRestart)
	if r.Kind == "voice" {
		s.metrics.faults.ended.WithLabelValues(causeGatewayRestart).Inc()
	}
	h := s.hub
	h.mu.Lock()
	cv := h.convs[r.ConversationID]
	h.mu.Unlock()
	if cv == nil {
		return // the conversation ended meanwhile: only the record changes
	}
	name, text := "voice.ended", "Call ended: The gateway restarted"
	data := map[string]any{"call": r.ID, "by": "system", "cause": causeGatewayRestart}
	switch {
	case r.Kind == "video":
		name, text = "video.ended", "Video ended: The gateway restarted"
		d := now.Sub(r.StartedAt).Round(time.Second)
		text += fmt.Sprintf(" (%d:%02d)", int(d.Minutes()), int(d.Seconds())%60)
		data["duration_s"] = int(d.Seconds())
	case r.AnsweredAt.IsZero():
		name, text = "voice.failed", "Call failed: The gateway restarted"
	default:
		d := now.Sub(r.AnsweredAt).Round(time.Second)
		text += fmt.Sprintf(" (%d:%02d)", int(d.Minutes()), int(d.Seconds())%60)
		data["duration_s"] = int(d.Seconds())
	}
	h.event(ctx, cv, name, text, data)
}

// endRecoveredDialog sends the BYE for a call the last run left up, a
// few times while the PBX does not answer.
func (s *Server) endRecoveredDialog(ctx context.Context, ender dialogEnder, r *store.CallRecord) {
	var d sip.Dialog
	if err := json.Unmarshal(r.Dialog, &d); err != nil {
		s.metrics.faults.recovered.WithLabelValues("bye_failed").Inc()
		s.log.Error("voice: recorded dialog unreadable", "call", r.ID, "err", err)
		return
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = ender.EndDialog(bctx, d)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, sip.ErrBadDialog) || errors.Is(err, sip.ErrUnknownTrunk) {
			break
		}
	}
	if err != nil {
		s.metrics.faults.recovered.WithLabelValues("bye_failed").Inc()
		s.log.Warn("voice: BYE for a call left up by the last run failed", "conv", r.ConversationID, "call", r.ID,
			"trunk", d.Trunk, "call_id", d.CallID, "err", err)
		return
	}
	s.metrics.faults.recovered.WithLabelValues("bye").Inc()
	s.log.Info("voice: BYE sent for a call left up by the last run", "conv", r.ConversationID, "call", r.ID,
		"trunk", d.Trunk, "call_id", d.CallID)
}

// recoverPanic, deferred at the top of a call's goroutine, turns a panic
// into the end of that call only: it logs the panic with its stack,
// counts it by where, and runs end (which must not panic itself).
func (s *Server) recoverPanic(where, call string, end func(error)) {
	p := recover()
	if p == nil {
		return
	}
	s.metrics.faults.panics.WithLabelValues(where).Inc()
	s.log.Error("panic recovered; the call ends", "where", where, "call", call, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	if end != nil {
		end(fmt.Errorf("%w: %v", errInternal, p))
	}
}

// endAfterPanic ends a call whose goroutine panicked, unless it already
// ended: the phone leg gets its BYE, the browser its call state.
func (v *voiceCall) endAfterPanic(cause error) {
	v.mu.Lock()
	phone, over := v.phone, !v.ended.IsZero()
	v.mu.Unlock()
	if !over {
		v.finish(phone, cause)
	}
}

// faultPoint is called where a call's goroutines can be made to fail in
// tests (faultinject_test.go sets it); in the product it does nothing.
var faultPoint = func(where string) {}

// Notice played to both sides of a call the gateway hangs up because it
// is stopping: three short 880 Hz beeps, 150 ms on and 100 ms off.
const (
	noticeHz    = 880
	noticeBeeps = 3
	noticeOn    = 150 * time.Millisecond
	noticeOff   = 100 * time.Millisecond
)

// playStopNotice unbridges a connected call and plays the stop notice to
// the desk phone and the customer's browser in real time (20 ms frames),
// so both hear why the line is about to go dead. It returns early when
// ctx ends.
func (v *voiceCall) playStopNotice(ctx context.Context, phone phoneCall) {
	v.mu.Lock()
	peer, toWeb := v.peer, v.toWeb
	v.mu.Unlock()
	closeQuietly(phone.SwapAudioOut(nil))
	var outs []transcode.PCMWriter
	outs = append(outs, phone.AudioIn())
	if peer != nil && toWeb != nil {
		closeQuietly(peer.SwapAudioOut(nil))
		outs = append(outs, toWeb)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	period := noticeOn + noticeOff
	for at := time.Duration(0); at < noticeBeeps*period; at += 20 * time.Millisecond {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		on := at%period < noticeOn
		for _, w := range outs {
			_ = w.WriteSample(noticeFrame(w.SampleRate(), at, on))
		}
	}
}

// noticeFrame is 20 ms of the notice at rate, starting at offset at: the
// tone when on, silence otherwise.
func noticeFrame(rate int, at time.Duration, on bool) transcode.PCM16 {
	n := rate / 50
	f := make(transcode.PCM16, n)
	if !on {
		return f
	}
	start := int(at.Seconds() * float64(rate))
	for i := range f {
		f[i] = int16(0.3 * 32767 * math.Sin(2*math.Pi*noticeHz*float64(start+i)/float64(rate)))
	}
	return f
}

// startDrain refuses new chats, sockets and calls from now on, the first
// step of a graceful stop; the sockets already open stay until shutdown.
func (h *hub) startDrain() {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
}

// drainCalls hangs up every call for a stop: connected calls play the
// stop notice first. It waits for the calls to end, or until ctx ends.
func (s *Server) drainCalls(ctx context.Context) {
	s.hub.mu.Lock()
	var calls []*voiceCall
	for _, cv := range s.hub.convs {
		if cv.voice != nil {
			calls = append(calls, cv.voice)
		}
	}
	s.hub.mu.Unlock()
	for _, v := range calls {
		v.cancel(errShutdown)
	}
	for _, v := range calls {
		select {
		case <-v.done:
		case <-ctx.Done():
			s.log.Warn("drain: calls still up at the drain deadline", "calls", len(calls))
			return
		}
	}
}
