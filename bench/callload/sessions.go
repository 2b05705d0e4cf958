package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

// The churn's sessions: a chat, a call, a video session, each one
// customer's life from opening the chat to its end, driven through the
// documented API (docs/api.md) as the widget and the console do. Each
// returns nil when everything the customer and the agent were due
// arrived, or an error whose text (up to any " (") is the failure's class.

// frameWait bounds how long a session waits for one answer of the
// gateway's (an ack, a delivered message, an agent's accept).
const frameWait = 15 * time.Second

// readFrames reads ws until it closes and hands each frame to the
// returned channel, which is closed at the end. A reader 256 frames
// behind loses frames rather than blocking the socket.
func readFrames(ws *websocket.Conn) <-chan wsFrame {
	ch := make(chan wsFrame, 256)
	go func() {
		defer close(ch)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var f wsFrame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			select {
			case ch <- f:
			default:
			}
		}
	}()
	return ch
}

// waitFrame waits for the first frame of ch that ok accepts, skipping the
// others.
func waitFrame(ctx context.Context, ch <-chan wsFrame, what string, ok func(wsFrame) bool) error {
	t := time.NewTimer(frameWait)
	defer t.Stop()
	for {
		select {
		case f, open := <-ch:
			if !open {
				return fmt.Errorf("socket closed waiting for %s", what)
			}
			if f.Type == "error" && f.Code != "rate_limited" {
				return fmt.Errorf("error %s waiting for %s (%s)", f.Code, what, f.Message)
			}
			if ok(f) {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no %s in time", what)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// messageFrom reports whether f delivers the message with client id id.
func messageFrom(f wsFrame, id string) bool {
	if f.Type != "message" {
		return false
	}
	var m struct {
		ID string `json:"id"`
	}
	return json.Unmarshal(f.Message, &m) == nil && m.ID == id
}

// holdFor waits d, or until release is closed or ctx ends.
func holdFor(ctx context.Context, d time.Duration, release <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-release:
	case <-ctx.Done():
	}
}

// endConversation has the agent end conversation id and waits until the
// agent is told it ended.
func (a *chatAPI) endConversation(ctx context.Context, id string, frames <-chan wsFrame) error {
	if err := a.asAgent(ctx, id, map[string]any{"type": "end", "conversation_id": id}); err != nil {
		return fmt.Errorf("end: %w", err)
	}
	return waitFrame(ctx, frames, "the conversation's end", func(f wsFrame) bool {
		return f.Type == "conversation" && f.Conversation.State == "ended"
	})
}

// chatSession is one chat: the customer opens it, an agent accepts, the
// customer sends a message at the start and one half-way, the agent
// answers at the end, and the agent closes it. Every message must be
// acknowledged to its sender and delivered to the other side.
func (ch *churn) chatSession(ctx context.Context, idx int, hold time.Duration, ready func(), release <-chan struct{}) (err error) {
	api := ch.api
	c, err := ch.openConv(ctx, fmt.Sprintf("Chat %d", idx))
	if err != nil {
		return err
	}
	defer func() { ch.closeConv(ctx, c, err) }()
	ws, convID, cust, agent := c.ws, c.id, c.cust, c.agent
	say := func(n int) error {
		id := fmt.Sprintf("m-%d-%d", idx, n)
		if err := writeJSON(ctx, ws, map[string]any{"type": "message", "id": id, "text": fmt.Sprintf("customer line %d of chat %d", n, idx)}); err != nil {
			return fmt.Errorf("message: %w", err)
		}
		if err := waitFrame(ctx, cust, "the customer's ack", func(f wsFrame) bool { return f.Type == "ack" && f.ID == id }); err != nil {
			return err
		}
		return waitFrame(ctx, agent, "the customer's message at the agent", func(f wsFrame) bool { return messageFrom(f, id) })
	}
	if err := say(1); err != nil {
		return err
	}
	ready()
	holdFor(ctx, hold/2, release)
	if err := say(2); err != nil {
		return err
	}
	holdFor(ctx, hold/2, release)
	id := fmt.Sprintf("a-%d", idx)
	if err := api.asAgent(ctx, convID, map[string]any{"type": "message", "conversation_id": convID, "id": id, "text": "agent reply"}); err != nil {
		return fmt.Errorf("agent message: %w", err)
	}
	if err := waitFrame(ctx, agent, "the agent's ack", func(f wsFrame) bool { return f.Type == "ack" && f.ID == id }); err != nil {
		return err
	}
	if err := waitFrame(ctx, cust, "the agent's message at the customer", func(f wsFrame) bool { return messageFrom(f, id) }); err != nil {
		return err
	}
	return api.endConversation(ctx, convID, agent)
}

// abandonOnError has the agent end conversation id when the session
// failed (*err set), so that a failed session leaves no open
// conversation behind to be mistaken for a leak. A conversation no agent
// accepted stays waiting until limits.abandoned_after.
func (ch *churn) abandonOnError(ctx context.Context, id string, err *error) {
	if *err == nil {
		return
	}
	_ = ch.api.asAgent(context.WithoutCancel(ctx), id, map[string]any{"type": "end", "conversation_id": id})
}

// conv is a conversation a session opened as its customer and an agent
// accepted.
type conv struct {
	id    string
	ws    *websocket.Conn // the customer's socket
	cust  <-chan wsFrame  // its frames
	agent <-chan wsFrame  // the frames agents get about it
}

// openConv opens a conversation as a customer and waits until an agent
// holds it; the caller closes it with closeConv.
func (ch *churn) openConv(ctx context.Context, name string) (*conv, error) {
	ws, id, _, err := ch.api.openConversation(ctx, name)
	if err != nil {
		return nil, err
	}
	c := &conv{id: id, ws: ws, cust: readFrames(ws), agent: ch.api.subscribe(id)}
	if err := waitAccepted(ctx, ch.api, id); err != nil {
		ch.closeConv(ctx, c, err)
		return nil, err
	}
	return c, nil
}

// closeConv ends what the session kept of c: after a failure (err set)
// the agent ends the conversation, then the API forgets it and the
// customer's socket closes.
func (ch *churn) closeConv(ctx context.Context, c *conv, err error) {
	ch.abandonOnError(ctx, c.id, &err)
	ch.api.forget(c.id)
	c.ws.CloseNow()
}

func waitAccepted(ctx context.Context, api *chatAPI, convID string) error {
	t := time.NewTimer(frameWait)
	defer t.Stop()
	select {
	case <-api.acceptedCh(convID):
		return nil
	case <-t.C:
		return errors.New("no agent accepted the conversation in time")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callSession is one escalated call, as bench/callload places them: a
// chat, voice.start, the echo phone answering; the customer's audio must
// come back with its marker, and the call must end (voice.hangup) with a
// call record. Then the agent closes the conversation.
func (ch *churn) callSession(ctx context.Context, idx int, hold time.Duration, ready func(), release <-chan struct{}) (err error) {
	c, err := ch.gen.newCall(idx)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, ch.o.setupTimeout)
	l, err := ch.target.setup(sctx, c)
	cancel()
	if c.convID != "" {
		defer ch.api.forget(c.convID)
		defer ch.abandonOnError(ctx, c.convID, &err)
	}
	if err != nil {
		c.close()
		return err
	}
	agent := ch.api.subscribe(c.convID)
	ready()
	holdFor(ctx, hold, release)
	c.stop()
	time.Sleep(200 * time.Millisecond) // the last returned audio
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer hcancel()
	l.hangup(hctx)
	c.close()
	ch.addCall(c)
	if c.firstAudio.Load() == 0 {
		return errors.New("no audio came back with the marker")
	}
	if rec := l.record(hctx); rec == nil || rec.AnsweredAt == nil || rec.EndedAt == nil {
		return errors.New("no finished call record")
	}
	return ch.api.endConversation(hctx, c.convID, agent)
}

// videoPeers is what the video sessions share: one pion API (VP8 and the
// default codecs, no interceptors) on one UDP socket for every customer
// and console peer connection.
type videoPeers struct {
	api  *pwebrtc.API
	conn net.PacketConn
	mux  ice.UDPMux
}

func newVideoPeers() (*videoPeers, error) {
	me := &pwebrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	conn, mux, se, err := loopbackSettings(true)
	if err != nil {
		return nil, err
	}
	v := &videoPeers{conn: conn, mux: mux}
	v.api = pwebrtc.NewAPI(pwebrtc.WithSettingEngine(se), pwebrtc.WithMediaEngine(me))
	return v, nil
}

func (v *videoPeers) close() {
	closeShared(v.conn, v.mux)
}

// gatheredOffer makes pc's offer with every candidate in it.
func gatheredOffer(pc *pwebrtc.PeerConnection) (string, error) {
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	done := pwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		return "", err
	}
	<-done
	return pc.LocalDescription().SDP, nil
}

// negTrace counts what negotiate saw, for the message of a session that
// failed: how far the signalling got.
type negTrace struct {
	answers, offers, answered, candidates atomic.Int64
}

func (t *negTrace) String() string {
	return fmt.Sprintf("%d answers and %d offers from the gateway, %d answered, %d candidates",
		t.answers.Load(), t.offers.Load(), t.answered.Load(), t.candidates.Load())
}

// negotiate applies the gateway's signalling for pc until frames closes
// or stop is closed: answers, offers (answered with send), candidates.
// Error frames go to errs; the others to rest, when it has room. With
// convID set (the console's side), its answers carry the id ref (see
// agentRef), so that an error the gateway answers one with comes back to
// this session. tr, if not nil, counts the frames.
func negotiate(pc *pwebrtc.PeerConnection, frames <-chan wsFrame, send func(v any) error, convID string, errs chan<- error, rest chan<- wsFrame, stop <-chan struct{}, tr *negTrace) {
	if tr == nil {
		tr = &negTrace{}
	}
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for {
		var f wsFrame
		var open bool
		select {
		case f, open = <-frames:
			if !open {
				return
			}
		case <-stop:
			return
		}
		switch f.Type {
		case "rtc.answer":
			tr.answers.Add(1)
			if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: f.SDP}); err != nil {
				report(fmt.Errorf("answer: %w", err))
			}
		case "rtc.offer":
			tr.offers.Add(1)
			if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: f.SDP}); err != nil {
				report(fmt.Errorf("gateway's offer: %w", err))
				continue
			}
			ans, err := pc.CreateAnswer(nil)
			if err != nil {
				report(fmt.Errorf("answer: %w", err))
				continue
			}
			done := pwebrtc.GatheringCompletePromise(pc)
			if err := pc.SetLocalDescription(ans); err != nil {
				report(fmt.Errorf("answer: %w", err))
				continue
			}
			<-done
			msg := map[string]any{"type": "rtc.answer", "sdp": pc.LocalDescription().SDP}
			if convID != "" {
				msg["conversation_id"] = convID
				msg["id"] = agentRef(convID, "answer")
			}
			if send(msg) == nil {
				tr.answered.Add(1)
			}
		case "rtc.candidate":
			tr.candidates.Add(1)
			var ci pwebrtc.ICECandidateInit
			if json.Unmarshal(f.Candidate, &ci) == nil && ci.Candidate != "" {
				_ = pc.AddICECandidate(ci)
			}
		case "error":
			// rate_limited too: the frame it answers was dropped.
			report(fmt.Errorf("error %s (%s)", f.Code, f.Message))
		default:
			select {
			case rest <- f:
			default:
			}
		}
	}
}

// Video sent by each customer: VP8-shaped RTP at videoFPS frames a
// second, each frame of videoPackets packets of videoPacketBytes.
const (
	videoFPS         = 15
	videoPacketBytes = 1000
)

// videoSession is one video session: a chat accepted by an agent, the
// customer's camera (video.start), the agent's console joining
// (media.join); the console must receive the camera's packets. Odd
// sessions end as a closed page does (the customer's peer connection and
// socket close first), even ones with the conversation still open;
// either way the agent then closes the conversation.
func (ch *churn) videoSession(ctx context.Context, idx int, hold time.Duration, ready func(), release <-chan struct{}) (err error) {
	api := ch.api
	c, err := ch.openConv(ctx, fmt.Sprintf("Video %d", idx))
	if err != nil {
		return err
	}
	defer func() { ch.closeConv(ctx, c, err) }()
	ws, convID, cust, agent := c.ws, c.id, c.cust, c.agent
	cpc, err := ch.video.api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		return err
	}
	defer cpc.Close()
	cam, err := pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, "camera", fmt.Sprintf("camera-%d", idx))
	if err != nil {
		return err
	}
	if _, err := cpc.AddTrack(cam); err != nil {
		return err
	}
	apc, err := ch.video.api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		return err
	}
	var readers sync.WaitGroup
	defer func() {
		_ = apc.Close()
		readers.Wait()
	}()
	if _, err := apc.AddTransceiverFromKind(pwebrtc.RTPCodecTypeVideo, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return err
	}
	var received atomic.Int64
	apc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		if tr.Kind() != pwebrtc.RTPCodecTypeVideo {
			return
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	})

	stop := make(chan struct{})
	var loops sync.WaitGroup
	defer loops.Wait()
	defer close(stop)
	errs := make(chan error, 4)
	var console negTrace
	agentRest := make(chan wsFrame, 64)
	loops.Add(2)
	go func() {
		defer loops.Done()
		negotiate(cpc, cust, func(v any) error { return writeJSON(ctx, ws, v) }, "", errs, nil, stop, nil)
	}()
	go func() {
		defer loops.Done()
		negotiate(apc, agent, func(v any) error { return api.asAgent(ctx, convID, v) }, convID, errs, agentRest, stop, &console)
	}()

	offer, err := gatheredOffer(cpc)
	if err != nil {
		return err
	}
	if err := writeJSON(ctx, ws, map[string]any{"type": "video.start", "sdp": offer}); err != nil {
		return fmt.Errorf("video.start: %w", err)
	}
	offer, err = gatheredOffer(apc)
	if err != nil {
		return err
	}
	if err := api.asAgent(ctx, convID, map[string]any{"type": "media.join", "conversation_id": convID, "id": agentRef(convID, "join"), "sdp": offer}); err != nil {
		return fmt.Errorf("media.join: %w", err)
	}

	sent, sendStop := int64(0), make(chan struct{})
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		sent = sendVideo(cam, idx, ch.o.churn.videoKbps, sendStop)
	}()
	deadline := time.Now().Add(frameWait)
	for received.Load() < videoFPS {
		select {
		case err := <-errs:
			close(sendStop)
			<-sendDone
			return err
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			close(sendStop)
			<-sendDone
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			close(sendStop)
			<-sendDone
			return fmt.Errorf("the camera did not reach the console in time (%d packets; conversation %s; console: %s, signalling %s, ICE %s; customer: ICE %s)",
				received.Load(), convID, &console, apc.SignalingState(), apc.ICEConnectionState(), cpc.ICEConnectionState())
		}
	}
	ready()
	holdFor(ctx, hold, release)
	close(sendStop)
	<-sendDone
	ch.addVideo(sent, received.Load())
	select {
	case err := <-errs:
		return err
	default:
	}
	if idx%2 == 1 {
		// The page closes: its peer connection, then its socket (1001).
		_ = cpc.Close()
		_ = ws.Close(websocket.StatusGoingAway, "page closed")
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	return api.endConversation(ectx, convID, agentRest)
}

// sendVideo writes the camera's packets to track until stop is closed and
// returns how many were written: about kbps kbit/s, videoFPS frames a
// second, the first packet of each frame shaped as a VP8 key frame's
// start so that the stream looks like one.
func sendVideo(track *pwebrtc.TrackLocalStaticRTP, idx, kbps int, stop <-chan struct{}) int64 {
	perFrame := max(1, kbps*1000/8/videoFPS/videoPacketBytes)
	payload := make([]byte, videoPacketBytes)
	payload[0], payload[1], payload[2], payload[3] = 0x10, 0x00, 0x9d, 0x01
	tk := time.NewTicker(time.Second / videoFPS)
	defer tk.Stop()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(idx * 4099)}, Payload: payload}
	var n int64
	for {
		select {
		case <-stop:
			return n
		case <-tk.C:
		}
		for i := range perFrame {
			pkt.SequenceNumber++
			pkt.Marker = i == perFrame-1
			if track.WriteRTP(&pkt) == nil {
				n++
			}
		}
		pkt.Timestamp += 90000 / videoFPS
	}
}
