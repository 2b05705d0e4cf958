package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"
	pwebrtc "github.com/pion/webrtc/v4"
)

// gatewayTarget places calls as the widget does: a conversation, an agent
// who accepts it, then voice.start with the customer's offer (docs/api.md,
// "Voice").
type gatewayTarget struct {
	api      *chatAPI
	agents   []string
	password string
}

func (t *gatewayTarget) prepare(ctx context.Context) error {
	for _, a := range t.agents {
		if err := t.api.runAgent(ctx, a, t.password); err != nil {
			return err
		}
	}
	return nil
}

// gatewayLeg is a call through the gateway: the customer's socket, read
// by one goroutine for the call's whole life.
type gatewayLeg struct {
	t      *gatewayTarget
	c      *call
	ws     *websocket.Conn
	states chan callFrame
	done   chan struct{}
}

type callFrame struct {
	State  string `json:"state"`
	Cause  string `json:"cause"`
	Reason string `json:"reason"`
	// RetryAfter is an error frame's retry_after, in seconds.
	RetryAfter int `json:"-"`
}

// busyError is a voice.start the gateway refused with the error code
// busy: past limits.max_calls or overloaded (docs/api.md, "Capacity").
type busyError struct {
	retryAfter int // seconds, from the error frame
	message    string
}

func (e *busyError) Error() string {
	return fmt.Sprintf("refused busy (retry_after %d s: %s)", e.retryAfter, e.message)
}

func (t *gatewayTarget) setup(ctx context.Context, c *call) (leg, error) {
	ws, convID, token, err := t.api.openConversation(context.WithoutCancel(ctx), fmt.Sprintf("Load %d", c.idx))
	if err != nil {
		return nil, err
	}
	c.convID, c.token = convID, token
	l := &gatewayLeg{t: t, c: c, ws: ws, states: make(chan callFrame, 16), done: make(chan struct{})}
	go l.read()
	select {
	case <-t.api.acceptedCh(convID):
	case <-ctx.Done():
		l.close()
		return nil, errors.New("no agent accepted the conversation in time")
	}
	sdp, err := c.offer()
	if err != nil {
		l.close()
		return nil, fmt.Errorf("offer: %w", err)
	}
	c.started = time.Now()
	if err := writeJSON(ctx, ws, map[string]any{"type": "voice.start", "sdp": sdp}); err != nil {
		l.close()
		return nil, fmt.Errorf("voice.start: %w", err)
	}
	last := "none"
	for {
		select {
		case f := <-l.states:
			switch f.State {
			case "connected":
				c.connected = time.Now()
				return l, nil
			case "failed", "ended":
				l.close()
				return nil, fmt.Errorf("call %s: %s (%s)", f.State, f.Cause, f.Reason)
			case "error":
				l.close()
				if f.Cause == "busy" {
					return nil, &busyError{retryAfter: f.RetryAfter, message: f.Reason}
				}
				return nil, fmt.Errorf("error frame: %s (%s)", f.Cause, f.Reason)
			}
			last = f.State
		case <-l.done:
			return nil, errors.New("customer socket closed during set-up")
		case <-ctx.Done():
			l.close()
			return nil, fmt.Errorf("not connected in time, last state %s (call %d)", last, c.idx)
		}
	}
}

// read handles the frames of the customer's socket: the answer and the
// gateway's candidates go to the peer connection, call states and errors
// to states.
func (l *gatewayLeg) read() {
	defer close(l.done)
	ctx := context.Background()
	for {
		_, b, err := l.ws.Read(ctx)
		if err != nil {
			return
		}
		var f struct {
			Type       string          `json:"type"`
			SDP        string          `json:"sdp"`
			Candidate  json.RawMessage `json:"candidate"`
			Call       callFrame       `json:"call"`
			Code       string          `json:"code"`
			Message    string          `json:"message"`
			RetryAfter int             `json:"retry_after"`
		}
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		switch f.Type {
		case "rtc.answer":
			l.c.useAnswer(f.SDP)
			if err := l.c.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: f.SDP}); err != nil {
				l.push(callFrame{State: "error", Cause: "bad answer", Reason: err.Error()})
			}
		case "rtc.candidate":
			var ci pwebrtc.ICECandidateInit
			if json.Unmarshal(f.Candidate, &ci) == nil && ci.Candidate != "" {
				_ = l.c.pc.AddICECandidate(ci)
			}
		case "call":
			l.push(f.Call)
		case "error":
			l.push(callFrame{State: "error", Cause: f.Code, Reason: f.Message, RetryAfter: f.RetryAfter})
		}
	}
}

// push hands a state to whoever waits for one, never blocking the reader.
func (l *gatewayLeg) push(f callFrame) {
	select {
	case l.states <- f:
	default:
	}
}

func (l *gatewayLeg) close() {
	l.ws.CloseNow()
	<-l.done
}

// hangup sends voice.hangup and waits for the call to end, then closes
// the customer's socket.
func (l *gatewayLeg) hangup(ctx context.Context) {
	defer l.close()
	if writeJSON(ctx, l.ws, map[string]any{"type": "voice.hangup"}) != nil {
		return
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-l.states:
			if f.State == "ended" || f.State == "failed" {
				return
			}
		case <-l.done:
			return
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (l *gatewayLeg) record(ctx context.Context) *callRecord {
	recs, err := l.t.api.calls(ctx, l.c.convID, l.c.token)
	if err != nil || len(recs) == 0 {
		return nil
	}
	return &recs[len(recs)-1]
}
