//go:build e2e

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// Helpers for tests that play several visitors against the real gateway,
// each from its own loopback address (127.0.0.x: Linux routes the whole
// /8 to lo), with pion peers that signal over the documented WebSocket
// API.

// visitor is a browser on one client address.
type visitor struct {
	t  testing.TB
	g  *gateway
	ip string
}

func (g *gateway) visitor(t testing.TB, ip string) *visitor {
	return &visitor{t: t, g: g, ip: ip}
}

// transport dials from the visitor's address.
func (v *visitor) transport() *http.Transport {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(v.ip)}, Timeout: 10 * time.Second}
	return &http.Transport{DialContext: d.DialContext}
}

// newConversation opens a chat from the visitor's address and returns its
// id and token.
func (v *visitor) newConversation(name string) (id, token string) {
	v.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &client{t: v.t, g: v.g, http: &http.Client{Jar: jar, Transport: v.transport(), Timeout: 30 * time.Second}, origin: v.g.Origin()}
	var out struct {
		Conversation conversation `json:"conversation"`
		Token        string       `json:"token"`
	}
	c.json(http.MethodPost, "/api/v1/conversations", map[string]string{"name": name, "queue": "support"}, http.StatusCreated, &out)
	return out.Conversation.ID, out.Token
}

// socket connects as the customer of token from the visitor's address.
func (v *visitor) socket(token string) *wsConn {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, v.g.WSURL(), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: v.transport()},
		HTTPHeader: http.Header{"Origin": {v.g.Origin()}},
	})
	if err != nil {
		v.t.Fatalf("dial from %s: %v", v.ip, err)
	}
	c.SetReadLimit(1 << 20)
	v.t.Cleanup(func() { c.CloseNow() })
	w := &wsConn{t: v.t, c: c}
	w.send(map[string]any{"type": "hello", "token": token})
	w.expect("welcome")
	return w
}

// rtcPeer is a pion peer connection standing in for a browser (or the
// console) on one socket: it answers the gateway's offers, takes its
// answers and candidates, and counts the video it receives. The socket
// belongs to it: its reader runs until the socket closes.
type rtcPeer struct {
	t      testing.TB
	w      *wsConn
	conv   string // conversation_id on the frames of a console; "" for a customer
	pc     *pwebrtc.PeerConnection
	heard  *audiotest.Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup

	negMu   sync.Mutex // one offer of ours at a time
	pcMu    sync.Mutex // guards pc's signalling state
	pending atomic.Pointer[pendingOffer]
	nextID  atomic.Int64
	// restartICE makes the next offer of ours an ICE restart (new
	// ufrag and password, candidates gathered again).
	restartICE atomic.Bool

	// micLate counts the microphone's frames sent late, after a tick
	// the machine was too busy to serve on time.
	micLate atomic.Int64
	// micOff stops the microphone for good.
	micOff atomic.Bool

	mu        sync.Mutex
	videos    map[uint32]*videoIn
	callState string
	// callCause and callReason are the cause code and words of the
	// call's last state.
	callCause, callReason string
	errs                  []string
}

type pendingOffer struct {
	id     string
	result chan string // "" for an answer applied, else the error code
}

// videoIn counts one received video stream; a sequence number seen again
// among the last 4,096 is a resend.
type videoIn struct {
	packets, bytes, resent, resentBytes int
	last                                time.Time
	newest                              uint16      // the highest sequence number, in serial order
	seen                                [4096]int32 // seq+1 of the packet in each slot, 0 for none
}

// rtcOptions tune a stand-in's pion API.
type rtcOptions struct {
	// noReplayWindow keeps every packet, resends included, so that they
	// can be counted.
	noReplayWindow bool
	// toneHz, when set, is the microphone: a tone of that frequency.
	toneHz float64
	// fec turns on the microphone's Opus in-band FEC, tuned for 10 % loss,
	// as browsers do when their receiver reports loss.
	fec bool
	// udpPort, when set, is the one local UDP port of the peer's ICE
	// candidate, so that a test can shape its traffic.
	udpPort int
	// net, when set, is where the peer's ICE gathers and sends (a
	// customerNet: networks to move between, jitter).
	net ice.UDPMux
}

// newRTCPeer makes a peer connection over loopback whose signalling runs
// on w. Without interceptors: it sends no NACK and no receiver reports of
// its own, only what a test writes.
func newRTCPeer(t testing.TB, w *wsConn, conv string, o rtcOptions) *rtcPeer {
	t.Helper()
	var se pwebrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.DisableSRTPReplayProtection(o.noReplayWindow)
	if o.net != nil {
		se.SetICEUDPMux(o.net)
	}
	if o.udpPort != 0 {
		if err := se.SetEphemeralUDPPortRange(uint16(o.udpPort), uint16(o.udpPort)); err != nil {
			t.Fatal(err)
		}
	}
	me := &pwebrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := pwebrtc.NewAPI(pwebrtc.WithSettingEngine(se), pwebrtc.WithMediaEngine(me)).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &rtcPeer{t: t, w: w, conv: conv, pc: pc, heard: audiotest.NewRecorder(8000), cancel: cancel, videos: map[uint32]*videoIn{}}
	if o.toneHz > 0 {
		p.microphone(ctx, o.toneHz, o.fec)
	}
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if tr.Kind() == pwebrtc.RTPCodecTypeVideo {
				p.receiveVideo(tr)
				return
			}
			dec, err := transcode.NewOpusDecoder(p.heard)
			if err != nil {
				return
			}
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				_ = dec.WriteSample(pkt.Payload)
			}
		}()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.readFrames(ctx)
	}()
	t.Cleanup(p.close)
	return p
}

// microphone sends a continuous tone, in 20 ms Opus frames, until the
// peer closes.
func (p *rtcPeer) microphone(ctx context.Context, hz float64, fec bool) {
	track, err := pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "mic")
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.pc.AddTrack(track); err != nil {
		p.t.Fatal(err)
	}
	cfg := transcode.OpusConfig{}
	if fec {
		cfg.FEC, cfg.PacketLoss = true, 10
	}
	enc, err := transcode.NewOpusEncoder(trackWriter{track}, 8000, cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tone := audiotest.Tone(8000, hz, 0.5, 10*time.Second)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		// A microphone never skips audio: the frames due by the clock
		// are all sent, late ones at once, since a ticker drops the
		// ticks a busy machine makes it miss. Otherwise the gateway
		// would conceal frames that were never lost.
		start, sent, off := time.Now(), 0, 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if p.micOff.Load() {
				return
			}
			due := int(time.Since(start)/(20*time.Millisecond)) + 1
			if due > sent+1 {
				p.micLate.Add(int64(due - sent - 1))
			}
			for ; sent < due; sent++ {
				_ = enc.WriteSample(tone[off : off+160])
				off = (off + 160) % len(tone)
			}
		}
	}()
}

// camera adds a VP8 track that sends pps packets a second of size bytes
// (payload), until the peer closes; add it before the offer that carries
// it.
func (p *rtcPeer) camera(id string, pps, size int) {
	track, err := pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, "camera", id)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.pc.AddTrack(track); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.t.Cleanup(cancel)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tk := time.NewTicker(time.Second / time.Duration(pps))
		defer tk.Stop()
		for seq := uint16(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if p.pc.ConnectionState() == pwebrtc.PeerConnectionStateClosed {
				return
			}
			payload := make([]byte, size)
			copy(payload, []byte{0x10, 0x00, 0x9d, 0x01, 0x2a})
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
		}
	}()
}

func (p *rtcPeer) receiveVideo(tr *pwebrtc.TrackRemote) {
	in := &videoIn{}
	p.mu.Lock()
	p.videos[uint32(tr.SSRC())] = in
	p.mu.Unlock()
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		var h rtp.Header
		if _, err := h.Unmarshal(buf[:n]); err != nil {
			continue
		}
		slot := &in.seen[h.SequenceNumber%uint16(len(in.seen))]
		p.mu.Lock()
		if *slot == int32(h.SequenceNumber)+1 {
			in.resent++
			in.resentBytes += n
		} else {
			*slot = int32(h.SequenceNumber) + 1
			if in.packets == 0 || int16(h.SequenceNumber-in.newest) > 0 {
				in.newest = h.SequenceNumber
			}
			in.packets++
			in.bytes += n
		}
		in.last = time.Now()
		p.mu.Unlock()
	}
}

// video returns a copy of the counts of the video stream received with
// ssrc, or of the first one when ssrc is 0.
func (p *rtcPeer) video(ssrc uint32) (videoIn, uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s, in := range p.videos {
		if ssrc == 0 || s == ssrc {
			return *in, s
		}
	}
	return videoIn{}, 0
}

// videoPackets is how many new video packets arrived, over all streams.
func (p *rtcPeer) videoPackets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, in := range p.videos {
		n += in.packets
	}
	return n
}

// frame adds the conversation id a console's frames need.
func (p *rtcPeer) frame(f map[string]any) map[string]any {
	if p.conv != "" {
		f["conversation_id"] = p.conv
	}
	return f
}

func (p *rtcPeer) readFrames(ctx context.Context) {
	for {
		_, raw, err := p.w.c.Read(ctx)
		if err != nil {
			if po := p.pending.Swap(nil); po != nil {
				po.result <- "socket closed"
			}
			return
		}
		var f sigFrame
		if json.Unmarshal(raw, &f) != nil {
			continue
		}
		if p.conv != "" && f.ConversationID != "" && f.ConversationID != p.conv {
			continue
		}
		switch f.Type {
		case "rtc.answer", "monitor.answer": // a supervisor's monitoring peer too
			p.pcMu.Lock()
			err := p.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: f.SDP})
			p.pcMu.Unlock()
			if po := p.pending.Swap(nil); po != nil {
				if err != nil {
					po.result <- "answer not applied: " + err.Error()
				} else {
					po.result <- ""
				}
			}
		case "rtc.offer":
			p.answerOffer(ctx, f.SDP)
		case "rtc.candidate", "monitor.candidate":
			if f.Candidate != nil && f.Candidate.Candidate != "" {
				_ = p.pc.AddICECandidate(*f.Candidate)
			}
		case "error":
			var e struct {
				Ref string `json:"ref"`
			}
			_ = json.Unmarshal(raw, &e)
			if po := p.pending.Load(); po != nil && e.Ref == po.id && p.pending.CompareAndSwap(po, nil) {
				po.result <- f.Code
				continue
			}
			p.mu.Lock()
			p.errs = append(p.errs, f.Code)
			p.mu.Unlock()
		case "call":
			var c struct {
				Call struct{ State, Cause, Reason string } `json:"call"`
			}
			_ = json.Unmarshal(raw, &c)
			p.mu.Lock()
			p.callState = c.Call.State
			p.callCause, p.callReason = c.Call.Cause, c.Call.Reason
			p.mu.Unlock()
		}
	}
}

// answerOffer answers an offer of the gateway, unless one of ours is
// pending (see offer).
func (p *rtcPeer) answerOffer(ctx context.Context, sdp string) {
	p.pcMu.Lock()
	defer p.pcMu.Unlock()
	if p.pc.SignalingState() != pwebrtc.SignalingStateStable {
		return
	}
	if err := p.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return
	}
	ans, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return
	}
	gathered := pwebrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(ans); err != nil {
		return
	}
	<-gathered
	_ = sendFrame(ctx, p.w, p.frame(map[string]any{"type": "rtc.answer", "sdp": p.pc.LocalDescription().SDP}))
}

// offer sends our offer as a frame of type typ (voice.start, video.start,
// media.join, rtc.offer) and waits for the answer. It returns "" once
// the answer is applied, else the error code. pion cannot roll a local
// offer back, so an offer the gateway refused stays pending, and the next
// call sends it again. The gateway's own offers are answered only while
// none of ours is pending.
func (p *rtcPeer) offer(typ string) string {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	p.pcMu.Lock()
	switch p.pc.SignalingState() {
	case pwebrtc.SignalingStateHaveLocalOffer:
		p.pcMu.Unlock()
	case pwebrtc.SignalingStateStable:
		o, err := p.pc.CreateOffer(&pwebrtc.OfferOptions{ICERestart: p.restartICE.Swap(false)})
		if err != nil {
			p.pcMu.Unlock()
			return "create offer: " + err.Error()
		}
		gathered := pwebrtc.GatheringCompletePromise(p.pc)
		if err := p.pc.SetLocalDescription(o); err != nil {
			p.pcMu.Unlock()
			return "set local: " + err.Error()
		}
		p.pcMu.Unlock()
		<-gathered
	default:
		p.pcMu.Unlock()
		return "signalling state " + p.pc.SignalingState().String()
	}
	po := &pendingOffer{id: fmt.Sprintf("o:%d", p.nextID.Add(1)), result: make(chan string, 1)}
	p.pending.Store(po)
	p.pcMu.Lock()
	sdp := p.pc.PendingLocalDescription().SDP
	p.pcMu.Unlock()
	if err := sendFrame(context.Background(), p.w, p.frame(map[string]any{"type": typ, "id": po.id, "sdp": sdp})); err != nil {
		p.pending.CompareAndSwap(po, nil)
		return "send: " + err.Error()
	}
	select {
	case r := <-po.result:
		return r
	case <-time.After(20 * time.Second):
		p.pending.CompareAndSwap(po, nil)
		return "no answer in 20 s"
	}
}

// connected waits until the peer connection is connected.
func (p *rtcPeer) connected(t *testing.T, what string) {
	t.Helper()
	waitFor(t, what+" connected", func() error {
		if s := p.pc.ConnectionState(); s != pwebrtc.PeerConnectionStateConnected {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})
}

// state returns the last call state the gateway reported.
func (p *rtcPeer) state() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.callState
}

// cause returns the cause code and the words of the call's last state.
func (p *rtcPeer) cause() (code, words string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.callCause, p.callReason
}

// close ends the peer connection and the socket, as a page that goes
// away, and waits for the goroutines.
func (p *rtcPeer) close() {
	p.cancel()
	_ = p.w.c.Close(websocket.StatusGoingAway, "")
	_ = p.pc.Close()
	p.wg.Wait()
}

// metricsOf scrapes /metrics from the gateway's admin listener into
// name{labels} -> value.
func metricsOf(t testing.TB, g *gateway) map[string]float64 {
	t.Helper()
	res, err := http.Get(g.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// rssOf is a process's resident memory, from /proc.
func rssOf(t testing.TB, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal(errors.New("no VmRSS in /proc status"))
	return 0
}
