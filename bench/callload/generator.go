package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
)

// generator plays every customer's browser. It is built to cost less than
// what it measures: one UDP socket shared by all peer connections (ICE
// UDP mux), one pion API (settings and media engine) for all of them, no
// interceptors (no reports, NACK or congestion control: the gateway's
// cost does not depend on them for audio), one goroutine that sends every
// call's next packet each 20 ms, and per call only pion's own goroutines
// plus one reader of the returned audio and one of RTCP.
type generator struct {
	api      *pwebrtc.API
	conn     net.PacketConn
	mux      ice.UDPMux
	pcmu     bool
	codec    pwebrtc.RTPCodecCapability
	payloads [][]byte
	// narrow is the microphone coded as a browser codes it for a peer
	// whose answer caps its playback at 8 kHz (maxplaybackrate=8000):
	// narrowband Opus. Nil for PCMU.
	narrow [][]byte
	// step is the RTP timestamp increment of one packet.
	step uint32

	mu     sync.Mutex
	active []*call
}

// genOptions are what the customers are like.
type genOptions struct {
	// pcmu: the customers offer PCMU only, and the gateway needs no
	// transcoding.
	pcmu bool
	// wideOnly: the customers send full-band Opus whatever the answer
	// asks, as a browser that ignores maxplaybackrate would.
	wideOnly bool
	// ownSockets: each customer gathers on a UDP socket of its own
	// instead of all sharing one. Needed against a gateway whose peers
	// share one port (webrtc.udp_mux_port): a mux tells its peers apart
	// by their remote address, and customers sharing one socket would
	// all have the same.
	ownSockets bool
}

// newGenerator opens the shared UDP socket on 127.0.0.1 (unless
// o.ownSockets) and pre-encodes the microphone: Opus, or PCMU when
// o.pcmu is set.
func newGenerator(o genOptions) (*generator, error) {
	pcmu, wideOnly := o.pcmu, o.wideOnly
	g := &generator{pcmu: pcmu}
	var err error
	me := &pwebrtc.MediaEngine{}
	if pcmu {
		g.codec = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}
		g.step = 160
		g.payloads, err = micPCMU()
		if err == nil {
			err = me.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: g.codec, PayloadType: 0}, pwebrtc.RTPCodecTypeAudio)
		}
	} else {
		g.codec = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
		g.step = 960
		g.payloads, err = micOpus()
		if err == nil && !wideOnly {
			g.narrow, err = micOpusNarrow()
		}
		if err == nil {
			err = me.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: g.codec, PayloadType: 111}, pwebrtc.RTPCodecTypeAudio)
		}
	}
	if err != nil {
		return nil, err
	}
	var se pwebrtc.SettingEngine
	if g.conn, g.mux, se, err = loopbackSettings(!o.ownSockets); err != nil {
		return nil, err
	}
	// rtpengine may send media as soon as ICE and DTLS are up, before
	// pion has finished applying its answer.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	g.api = pwebrtc.NewAPI(pwebrtc.WithSettingEngine(se), pwebrtc.WithMediaEngine(me))
	return g, nil
}

// loopbackSettings returns pion settings for ICE on loopback only,
// without mDNS, logging errors only. With shared it also opens one UDP
// socket on 127.0.0.1 and runs every peer connection's ICE on it (an ICE
// UDP mux); without, each peer connection opens its own and conn and mux
// are nil.
func loopbackSettings(shared bool) (net.PacketConn, ice.UDPMux, pwebrtc.SettingEngine, error) {
	var se pwebrtc.SettingEngine
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	se.LoggerFactory = lf
	var conn net.PacketConn
	var mux ice.UDPMux
	if shared {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, nil, se, err
		}
		conn = c
		mux = pwebrtc.NewICEUDPMux(lf.NewLogger("mux"), conn)
		se.SetICEUDPMux(mux)
	}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return conn, mux, se, nil
}

// close closes the shared socket.
func (g *generator) close() {
	closeShared(g.conn, g.mux)
}

// closeShared closes what loopbackSettings opened, if anything.
func closeShared(conn net.PacketConn, mux ice.UDPMux) {
	if mux != nil {
		_ = mux.Close()
	}
	if conn != nil {
		_ = conn.Close()
	}
}

// call is one customer's call and what the generator measured of it.
type call struct {
	idx   int
	gen   *generator
	pc    *pwebrtc.PeerConnection
	track *pwebrtc.TrackLocalStaticRTP
	wg    sync.WaitGroup

	// Set by the sender goroutine only.
	pkt rtp.Packet
	pos int
	// payloads is the microphone this call sends, chosen by the answer
	// (useAnswer) before its media is up.
	payloads [][]byte

	sending    atomic.Bool
	sent       atomic.Uint64
	goodFrames atomic.Uint64
	firstAudio atomic.Int64 // unix ns of the first returned frame with the marker
	mediaUp    atomic.Int64 // unix ns when ICE and DTLS connected
	rrLost     atomic.Int64 // cumulative loss the far end reported by RTCP (RFC 3550 §6.4.1)
	rrSeen     atomic.Bool

	// pingSent holds when each ping's first packet was sent.
	pingMu   sync.Mutex
	pingSent []time.Time

	// Owned by the receiver goroutine until wg.Wait.
	frames frameLog
	rx     seqCounter
	// rtts are the round trips timed by the pings' onsets.
	rtts   []time.Duration
	pingOn bool

	// Owned by the call's own goroutine in run.
	started   time.Time // voice.start sent (or the ng offer)
	connected time.Time // the gateway said connected (or media up, for rtpengine)
	stopped   time.Time // the generator stopped sending
	fail      string
	// decodeErr is set by the receiver goroutine (read after wg.Wait).
	decodeErr error
	record    *callRecord
	convID    string
	token     string
}

// newCall builds a customer's peer connection with its microphone track.
func (g *generator) newCall(idx int) (*call, error) {
	pc, err := g.api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &call{idx: idx, gen: g, pc: pc, payloads: g.payloads}
	c.track, err = pwebrtc.NewTrackLocalStaticRTP(g.codec, "audio", fmt.Sprintf("customer-%d", idx))
	if err == nil {
		var sender *pwebrtc.RTPSender
		sender, err = pc.AddTrack(c.track)
		if err == nil {
			c.wg.Add(1)
			go c.readRTCP(sender)
		}
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	c.pkt = rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(idx * 7919), Timestamp: uint32(idx) * 104729}}
	pc.OnConnectionStateChange(func(s pwebrtc.PeerConnectionState) {
		if s == pwebrtc.PeerConnectionStateConnected && c.mediaUp.CompareAndSwap(0, time.Now().UnixNano()) {
			c.sending.Store(true)
			g.mu.Lock()
			g.active = append(g.active, c)
			g.mu.Unlock()
		}
	})
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		if tr.Kind() != pwebrtc.RTPCodecTypeAudio {
			return
		}
		c.wg.Add(1)
		go c.readAudio(tr)
	})
	return c, nil
}

// offer creates the customer's offer with every candidate gathered (one
// host candidate on the shared socket).
func (c *call) offer() (string, error) {
	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	done := pwebrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		return "", err
	}
	<-done
	return c.pc.LocalDescription().SDP, nil
}

// useAnswer applies the far end's answer to what the call sends, as
// Chrome does: an Opus maxplaybackrate of 8000 or less (RFC 7587 §6.1)
// caps its encoder at narrowband, so the call sends narrowband Opus. It
// must be called before the call's media is up.
func (c *call) useAnswer(sdp string) {
	if c.gen.narrow != nil && opusMaxPlayback(sdp) <= 8000 {
		c.payloads = c.gen.narrow
	}
}

// opusMaxPlayback returns the smallest maxplaybackrate of the Opus
// formats in sdp, or 48000 when none sets it.
func opusMaxPlayback(sdp string) int {
	opus := map[string]bool{}
	rate := 48000
	for line := range strings.Lines(sdp) {
		line = strings.TrimSpace(line)
		if pt, rest, ok := strings.Cut(strings.TrimPrefix(line, "a=rtpmap:"), " "); ok && strings.HasPrefix(line, "a=rtpmap:") && strings.HasPrefix(strings.ToLower(rest), "opus/") {
			opus[pt] = true
		}
		pt, params, ok := strings.Cut(strings.TrimPrefix(line, "a=fmtp:"), " ")
		if !ok || !strings.HasPrefix(line, "a=fmtp:") || !opus[pt] {
			continue
		}
		for kv := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if n, err := strconv.Atoi(v); err == nil && strings.EqualFold(k, "maxplaybackrate") && n > 0 {
				rate = min(rate, n)
			}
		}
	}
	return rate
}

// readRTCP keeps the cumulative loss of the far end's receiver reports
// about our stream.
func (c *call) readRTCP(s *pwebrtc.RTPSender) {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			var reports []rtcp.ReceptionReport
			switch r := p.(type) {
			case *rtcp.ReceiverReport:
				reports = r.Reports
			case *rtcp.SenderReport:
				reports = r.Reports
			}
			for _, rr := range reports {
				c.rrLost.Store(int64(rr.TotalLost))
				c.rrSeen.Store(true)
			}
		}
	}
}

// readAudio decodes the returned audio, frame by frame, and logs the
// frames that carry the marker.
func (c *call) readAudio(tr *pwebrtc.TrackRemote) {
	defer c.wg.Done()
	judge, err := c.gen.frameJudge()
	if err != nil {
		c.decodeErr = err
		return
	}
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		c.rx.add(pkt.SequenceNumber)
		marker, ping := judge(pkt.Payload)
		now := time.Now()
		if marker {
			c.frames.add(now)
			c.goodFrames.Add(1)
			c.firstAudio.CompareAndSwap(0, now.UnixNano())
		}
		if ping && !c.pingOn {
			c.pingOnset(now)
		}
		c.pingOn = ping
	}
}

// pingOnset times the round trip of the ping whose onset came back at
// now: since the latest ping sent before now, if that was less than one
// ping interval ago.
func (c *call) pingOnset(now time.Time) {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	for i := len(c.pingSent) - 1; i >= 0; i-- {
		if d := now.Sub(c.pingSent[i]); d >= 0 {
			if d < pingEvery*frameDur {
				c.rtts = append(c.rtts, d)
			}
			return
		}
	}
}

// frameJudge returns a function that decodes one returned payload to
// 8 kHz and says whether it carries the marker and the ping.
func (g *generator) frameJudge() (func([]byte) (marker, ping bool), error) {
	if g.pcmu {
		sink := &lastFrame{}
		dec, err := transcode.NewULawDecoder(sink)
		if err != nil {
			return nil, err
		}
		return func(p []byte) (bool, bool) {
			sink.pcm = sink.pcm[:0]
			if dec.WriteSample(p) != nil {
				return false, false
			}
			return hasMarker(sink.pcm, 8000), hasPing(sink.pcm, 8000)
		}, nil
	}
	dec, err := transcode.GoOpus().NewDecoder(8000)
	if err != nil {
		return nil, err
	}
	pcm := make([]int16, 960)
	return func(p []byte) (bool, bool) {
		n, err := dec.Decode(p, pcm)
		if err != nil {
			return false, false
		}
		return hasMarker(pcm[:n], 8000), hasPing(pcm[:n], 8000)
	}, nil
}

// lastFrame keeps the last frame written to it.
type lastFrame struct{ pcm transcode.PCM16 }

func (l *lastFrame) WriteSample(s transcode.PCM16) error {
	l.pcm = append(l.pcm[:0], s...)
	return nil
}
func (l *lastFrame) SampleRate() int { return 8000 }
func (l *lastFrame) String() string  { return "last frame" }
func (l *lastFrame) Close() error    { return nil }

// maxCatchUp bounds how many packets per call the sender sends at once
// after it was held up, as a browser's would.
const maxCatchUp = 5

// send runs the one sender of every call until stop is closed: each 20 ms
// of media time, the next packet of each call whose media is up. When the
// generator falls behind it catches up (at most maxCatchUp frames), so
// that what the gateway gets keeps media time.
func (g *generator) send(stop <-chan struct{}) {
	start := time.Now()
	tk := time.NewTicker(frameDur)
	defer tk.Stop()
	var ticks int64
	var batch []*call
	for {
		select {
		case <-stop:
			return
		case now := <-tk.C:
			due := int64(now.Sub(start) / frameDur)
			n := min(due-ticks, maxCatchUp)
			ticks = due
			g.mu.Lock()
			batch = append(batch[:0], g.active...)
			g.mu.Unlock()
			for range n {
				for _, c := range batch {
					if c.sending.Load() {
						c.sendNext()
					}
				}
			}
		}
	}
}

func (c *call) sendNext() {
	g := c.gen
	i := c.pos % len(c.payloads)
	c.pkt.Payload = c.payloads[i]
	c.pos++
	if isPingStart(i) {
		c.pingMu.Lock()
		c.pingSent = append(c.pingSent, time.Now())
		c.pingMu.Unlock()
	}
	if err := c.track.WriteRTP(&c.pkt); err != nil && !errors.Is(err, net.ErrClosed) {
		return
	}
	c.sent.Add(1)
	c.pkt.Marker = false
	c.pkt.SequenceNumber++
	c.pkt.Timestamp += g.step
}

// stop stops the call's microphone and removes it from the sender's list.
func (c *call) stop() {
	if c.sending.Swap(false) {
		c.stopped = time.Now()
	}
	g := c.gen
	g.mu.Lock()
	for i, a := range g.active {
		if a == c {
			g.active = append(g.active[:i], g.active[i+1:]...)
			break
		}
	}
	g.mu.Unlock()
}

// close closes the peer connection and waits for the call's readers.
func (c *call) close() {
	c.stop()
	_ = c.pc.Close()
	c.wg.Wait()
}
