package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// monitorSession is a supervisor's console peer connection on a call of
// a supervised queue: it hears both sides through the call's tap, and in
// whisper or barge mode speaks into it. Nothing of it reaches the
// customer's widget or the transcript.
type monitorSession struct {
	supervisor string
	cl         *client
	cv         *conv
	call       *voiceCall
	peer       browserPeer
	tap        *callTap
	// mode is guarded by supervision.mu.
	mode string

	stopOnce sync.Once
	stopped  chan struct{}
}

func (ms *monitorSession) stop() { ms.stopOnce.Do(func() { close(ms.stopped) }) }

var (
	// errMonitorBusy: another supervisor monitors the call.
	errMonitorBusy = errf(http.StatusConflict, "in_use", "another supervisor is monitoring this call")
	// errNotMonitoring: no monitoring of this call by this supervisor.
	errNotMonitoring = errf(http.StatusConflict, "not_monitoring", "you are not monitoring this call")
	// errCallNotUp: the call is not connected (yet, or any more).
	errCallNotUp = errf(http.StatusConflict, "not_connected", "the call is not connected")
)

// monitorTap puts the monitoring of cv's call, if any, on the bridge's
// two destinations: toWeb gets the phone's audio, toPhone the customer's.
// Without monitoring it returns them as they are.
func (s *Server) monitorTap(cv *conv, toWeb, toPhone transcode.PCMWriter) (transcode.PCMWriter, transcode.PCMWriter) {
	s.super.mu.Lock()
	ms := s.super.monitors[cv]
	s.super.mu.Unlock()
	if ms == nil {
		return toWeb, toPhone
	}
	return ms.tap.fromPhone(toWeb), ms.tap.fromCustomer(toPhone)
}

// startMonitor answers a supervisor console's offer to listen to the
// voice call of a conversation of a queue it supervises. The call must
// be connected between the customer's browser and a phone; one
// supervisor monitors a call at a time. Monitoring starts in listen mode.
func (s *Server) startMonitor(ctx context.Context, cl *client, convID, offer string) error {
	if s.phones == nil || s.peers == nil {
		return errVoiceOff
	}
	if convID == "" {
		return errf(http.StatusBadRequest, "bad_frame", "conversation_id is required")
	}
	if offer == "" || len(offer) > 64<<10 {
		return errf(http.StatusBadRequest, "bad_frame", "monitor.start needs the SDP offer in sdp")
	}
	h := s.hub
	h.mu.Lock()
	cv, ok := h.convs[convID]
	if !ok {
		h.mu.Unlock()
		return ErrNotFound
	}
	if !supervises(h.agents[cl.agentID], cv.c.Queue) {
		h.mu.Unlock()
		return errNotSupervisor
	}
	v := cv.voice
	h.mu.Unlock()
	if v == nil {
		return errNoCall
	}
	v.mu.Lock()
	up := v.state == callConnected || v.state == callHeld
	v.mu.Unlock()
	if !up {
		return errCallNotUp
	}
	ms := &monitorSession{supervisor: cl.agentID, cl: cl, cv: cv, call: v, mode: monitorListen, stopped: make(chan struct{})}
	s.super.mu.Lock()
	if s.super.monitors == nil {
		s.super.monitors = map[*conv]*monitorSession{}
	}
	if s.super.monitors[cv] != nil {
		s.super.mu.Unlock()
		return errMonitorBusy
	}
	s.super.monitors[cv] = ms // reserved; the tap comes with the peer
	s.super.mu.Unlock()
	release := func() {
		s.super.mu.Lock()
		if s.super.monitors[cv] == ms {
			delete(s.super.monitors, cv)
		}
		s.super.mu.Unlock()
	}
	gate := &candidateGate{send: func(cand json.RawMessage) {
		cl.send(map[string]any{"type": "monitor.candidate", "conversation_id": convID, "candidate": cand})
	}}
	peer, err := s.peers.NewPeer(context.WithoutCancel(ctx), convID+"/supervisor", peerHooks{candidate: gate.add, dtmf: func(rune) {}})
	if err != nil {
		release()
		return errNotForwardable
	}
	answer, err := peer.Answer(ctx, offer)
	if err != nil {
		release()
		peer.Close()
		return offerRefused(err, "the console's offer could not be used")
	}
	// The peer's AudioIn is what the supervisor hears; what it sends
	// goes to the tap, which drops it while only listening.
	ms.peer, ms.tap = peer, newCallTap(peer.AudioIn(), time.Now)
	closeQuietly(peer.SwapAudioOut(ms.tap.fromSupervisor()))
	s.routeAudio(cv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-peer.Done():
		case <-v.done:
		case <-v.ctx.Done():
		case <-cl.quit:
		case <-ms.stopped:
		}
		release()
		s.routeAudio(cv)
		peer.Close()
		cl.send(map[string]any{"type": "monitor", "conversation_id": convID, "state": "ended"})
		s.log.Info("supervisor: monitoring ended", "conv", convID, "supervisor", ms.supervisor)
		s.boardChanged()
	}()
	gate.open(func() {
		cl.send(map[string]any{"type": "monitor.answer", "conversation_id": convID, "sdp": answer})
		cl.send(map[string]any{"type": "monitor", "conversation_id": convID, "state": monitorListen})
	})
	s.log.Info("supervisor: monitoring started", "conv", convID, "call", v.id, "supervisor", cl.agentID)
	s.boardChanged()
	return nil
}

// monitorOf returns the monitoring of conversation convID by the
// supervisor of cl.
func (s *Server) monitorOf(cl *client, convID string) (*monitorSession, error) {
	s.super.mu.Lock()
	defer s.super.mu.Unlock()
	for cv, ms := range s.super.monitors {
		if cv.c.ID == convID && ms.supervisor == cl.agentID && ms.tap != nil {
			return ms, nil
		}
	}
	return nil, errNotMonitoring
}

// setMonitorMode switches the supervisor between listen, whisper (to the
// agent's phone only) and barge (both sides hear it).
func (s *Server) setMonitorMode(cl *client, convID, mode string) error {
	switch mode {
	case monitorListen, monitorWhisper, monitorBarge:
	default:
		return errf(http.StatusBadRequest, "bad_frame", "state must be listen, whisper or barge")
	}
	ms, err := s.monitorOf(cl, convID)
	if err != nil {
		return err
	}
	ms.tap.setMode(mode)
	s.super.mu.Lock()
	ms.mode = mode
	s.super.mu.Unlock()
	s.log.Info("supervisor: monitor mode", "conv", convID, "supervisor", cl.agentID, "mode", mode)
	cl.send(map[string]any{"type": "monitor", "conversation_id": convID, "state": mode})
	s.boardChanged()
	return nil
}

// monitorCandidate adds an ICE candidate of the supervisor's console.
func (s *Server) monitorCandidate(cl *client, convID string, cand json.RawMessage) error {
	ms, err := s.monitorOf(cl, convID)
	if err != nil {
		return err
	}
	return ms.peer.AddICECandidate(cand)
}

// stopMonitorOf ends the supervisor's monitoring of a call.
func (s *Server) stopMonitorOf(cl *client, convID string) error {
	ms, err := s.monitorOf(cl, convID)
	if err != nil {
		return err
	}
	ms.stop()
	return nil
}
