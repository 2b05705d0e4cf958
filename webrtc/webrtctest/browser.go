// Package webrtctest provides a stand-in for a customer's or agent's
// browser in tests of code that uses package webrtc: a pion peer
// connection on loopback that offers or answers, trickles candidates,
// plays a tone as its microphone, sends RFC 4733 digits and records what it
// hears. Its API speaks SDP strings and RTCIceCandidateInit values only,
// as a gateway's signalling does, so tests need no pion import.
package webrtctest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// ErrNotConnected is returned by SendDigits before the microphone track is
// negotiated, or when telephone-event was not negotiated.
var ErrNotConnected = errors.New("webrtctest: no telephone-event on a negotiated track")

// Candidate is a trickled ICE candidate, the browser's
// RTCIceCandidateInit; it converts to and from webrtc.ICECandidateInit.
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Options configures a Browser.
type Options struct {
	// Codec is the microphone's codec, offered first: "opus" (the
	// default), "PCMU" or "PCMA".
	Codec string
	// Tone is the frequency the microphone plays, in Hz; 0 means 1000.
	Tone float64
	// OnCandidate receives the browser's candidates as they are gathered
	// (trickle ICE). It must not block. When nil, Offer and Answer wait
	// for gathering to complete and return every candidate in the SDP.
	OnCandidate func(Candidate)
}

// Browser is a test peer playing a browser. Its methods are safe for
// concurrent use.
type Browser struct {
	pc    *pwebrtc.PeerConnection
	opts  Options
	mic   *micTrack
	heard *audiotest.Recorder

	mu      sync.Mutex
	pending []pwebrtc.ICECandidateInit

	wg   sync.WaitGroup
	stop chan struct{}
	once sync.Once
}

// New starts a Browser. Close it when done.
func New(opts Options) (*Browser, error) {
	if opts.Codec == "" {
		opts.Codec = "opus"
	}
	if opts.Tone == 0 {
		opts.Tone = 1000
	}
	codecs := map[string]pwebrtc.RTPCodecParameters{
		"opus": {RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		"PCMU": {RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		"PCMA": {RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
	}
	first, ok := codecs[opts.Codec]
	if !ok {
		return nil, fmt.Errorf("webrtctest: unknown codec %q", opts.Codec)
	}
	me := &pwebrtc.MediaEngine{}
	order := []pwebrtc.RTPCodecParameters{first}
	for _, name := range []string{"opus", "PCMU", "PCMA"} {
		if name != opts.Codec {
			order = append(order, codecs[name])
		}
	}
	order = append(order,
		pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 48000, SDPFmtpLine: "0-15"}, PayloadType: 101},
		pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-15"}, PayloadType: 126},
	)
	for _, c := range order {
		if err := me.RegisterCodec(c, pwebrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("webrtctest: %w", err)
		}
	}
	reg := &interceptor.Registry{}
	if err := pwebrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, fmt.Errorf("webrtctest: %w", err)
	}
	se := pwebrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	api := pwebrtc.NewAPI(pwebrtc.WithMediaEngine(me), pwebrtc.WithInterceptorRegistry(reg), pwebrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("webrtctest: %w", err)
	}
	b := &Browser{pc: pc, opts: opts, heard: audiotest.NewRecorder(8000), stop: make(chan struct{})}
	b.mic = &micTrack{mime: first.MimeType}
	sender, err := pc.AddTrack(b.mic)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("webrtctest: %w", err)
	}
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer b.wg.Done()
		b.playMic()
	}()
	pc.OnICECandidate(func(c *pwebrtc.ICECandidate) {
		if c != nil && opts.OnCandidate != nil {
			j := c.ToJSON()
			opts.OnCandidate(Candidate(j))
		}
	})
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
		if tr.Kind() != pwebrtc.RTPCodecTypeAudio {
			return
		}
		b.wg.Add(2)
		go func() {
			// Reading RTCP lets pion process the gateway's sender
			// reports, so that receiver reports carry LSR/DLSR.
			defer b.wg.Done()
			for {
				if _, _, err := recv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer b.wg.Done()
			b.listen(tr)
		}()
	})
	return b, nil
}

// Offer makes and applies an offer, as the page's createOffer and
// setLocalDescription would.
func (b *Browser) Offer() (string, error) {
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("webrtctest: %w", err)
	}
	return b.setLocal(o)
}

// RestartICE makes an offer with new ICE credentials, as when the
// browser's network changes.
func (b *Browser) RestartICE() (string, error) {
	o, err := b.pc.CreateOffer(&pwebrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return "", fmt.Errorf("webrtctest: %w", err)
	}
	return b.setLocal(o)
}

// Answer applies the gateway's offer and returns the browser's answer.
func (b *Browser) Answer(offer string) (string, error) {
	if err := b.setRemote(pwebrtc.SDPTypeOffer, offer); err != nil {
		return "", err
	}
	a, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("webrtctest: %w", err)
	}
	return b.setLocal(a)
}

// SetAnswer applies the gateway's answer to the last Offer.
func (b *Browser) SetAnswer(answer string) error {
	return b.setRemote(pwebrtc.SDPTypeAnswer, answer)
}

func (b *Browser) setLocal(d pwebrtc.SessionDescription) (string, error) {
	var gathered <-chan struct{}
	if b.opts.OnCandidate == nil {
		gathered = pwebrtc.GatheringCompletePromise(b.pc)
	}
	if err := b.pc.SetLocalDescription(d); err != nil {
		return "", fmt.Errorf("webrtctest: %w", err)
	}
	if gathered != nil {
		<-gathered
	}
	return b.pc.LocalDescription().SDP, nil
}

func (b *Browser) setRemote(t pwebrtc.SDPType, sdp string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: t, SDP: sdp}); err != nil {
		return fmt.Errorf("webrtctest: %w", err)
	}
	for _, c := range b.pending {
		_ = b.pc.AddICECandidate(c)
	}
	b.pending = nil
	return nil
}

// AddCandidate adds a candidate from the gateway; one that arrives before
// the gateway's description is kept until it is applied.
func (b *Browser) AddCandidate(c Candidate) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	pc := pwebrtc.ICECandidateInit(c)
	if b.pc.RemoteDescription() == nil {
		b.pending = append(b.pending, pc)
		return nil
	}
	if err := b.pc.AddICECandidate(pc); err != nil {
		return fmt.Errorf("webrtctest: %w", err)
	}
	return nil
}

// Connected reports whether the peer connection is connected.
func (b *Browser) Connected() bool {
	return b.pc.ConnectionState() == pwebrtc.PeerConnectionStateConnected
}

// Heard returns what the browser received so far, decoded to 8 kHz.
func (b *Browser) Heard() transcode.PCM16 { return b.heard.Samples() }

// SendDigits sends digits as RFC 4733 telephone-events on the microphone
// track, as RTCDTMFSender.insertDTMF does: 100 ms each, 70 ms apart. The
// microphone stays silent meanwhile. It returns once they are sent.
func (b *Browser) SendDigits(digits string) error {
	for _, d := range digits {
		code, err := transcode.DTMFCode(d)
		if err != nil {
			return fmt.Errorf("webrtctest: %w", err)
		}
		if err := b.mic.sendEvent(code); err != nil {
			return err
		}
		time.Sleep(70 * time.Millisecond)
	}
	return nil
}

// Close closes the peer connection and waits for the browser's goroutines.
func (b *Browser) Close() error {
	var err error
	b.once.Do(func() {
		close(b.stop)
		err = b.pc.GracefulClose()
		b.wg.Wait()
	})
	return err
}

// playMic sends the tone on a 20 ms clock, catching up after stalls.
func (b *Browser) playMic() {
	var enc transcode.PCMWriter
	var rate int
	out := &lastPayload{}
	var err error
	switch b.opts.Codec {
	case "opus":
		rate = 48000
		enc, err = transcode.NewOpusEncoder(out.at(transcode.OpusClockRate), rate, transcode.OpusConfig{})
	case "PCMU":
		rate = 8000
		enc, err = transcode.NewULawEncoder(out.at(8000))
	case "PCMA":
		rate = 8000
		enc, err = transcode.NewALawEncoder(out.at(8000))
	}
	if err != nil {
		return
	}
	tone := audiotest.Tone(rate, b.opts.Tone, 0.5, time.Second)
	n := rate / 50
	pos := 0
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	next := time.Now()
	for {
		select {
		case <-b.stop:
			return
		case <-tk.C:
		}
		for now := time.Now(); !next.After(now); next = next.Add(20 * time.Millisecond) {
			if pos+n > len(tone) {
				pos = 0
			}
			if enc.WriteSample(tone[pos:pos+n]) == nil {
				b.mic.sendAudio(out.p, uint32(n*48000/rate))
			}
			pos += n
		}
	}
}

// listen decodes the gateway's audio into heard.
func (b *Browser) listen(tr *pwebrtc.TrackRemote) {
	var dec transcode.BytesWriter
	var err error
	switch strings.ToLower(tr.Codec().MimeType) {
	case "audio/opus":
		dec, err = transcode.NewOpusDecoder(b.heard)
	case "audio/pcmu":
		dec, err = transcode.NewULawDecoder(b.heard)
	case "audio/pcma":
		dec, err = transcode.NewALawDecoder(b.heard)
	default:
		err = errors.New("unknown codec")
	}
	if err != nil {
		return
	}
	pt := tr.PayloadType()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if pwebrtc.PayloadType(pkt.PayloadType) == pt {
			_ = dec.WriteSample(pkt.Payload)
		}
	}
}

// lastPayload keeps the last payload an encoder wrote.
type lastPayload struct {
	p    []byte
	rate int
}

func (l *lastPayload) at(rate int) *lastPayload { l.rate = rate; return l }

func (l *lastPayload) WriteSample(p []byte) error { l.p = append(l.p[:0], p...); return nil }
func (l *lastPayload) SampleRate() int            { return l.rate }
func (l *lastPayload) String() string             { return "payload" }
func (l *lastPayload) Close() error               { return nil }

// micTrack is the microphone: a TrackLocal that writes its own packets,
// so that telephone-events can share its SSRC and sequence numbers.
type micTrack struct {
	mime string

	mu     sync.Mutex
	w      pwebrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8
	tePT   int // -1 without telephone-event
	clock  uint32
	seq    uint16
	ts     uint32
	inDTMF bool
}

func (m *micTrack) Bind(ctx pwebrtc.TrackLocalContext) (pwebrtc.RTPCodecParameters, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var found *pwebrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, m.mime) && found == nil {
			found = &c
		}
	}
	if found == nil {
		return pwebrtc.RTPCodecParameters{}, pwebrtc.ErrUnsupportedCodec
	}
	m.w, m.ssrc, m.pt, m.clock, m.tePT = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(found.PayloadType), found.ClockRate, -1
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, "audio/telephone-event") && c.ClockRate == found.ClockRate {
			m.tePT = int(c.PayloadType)
		}
	}
	return *found, nil
}

func (m *micTrack) Unbind(pwebrtc.TrackLocalContext) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.w = nil
	return nil
}

func (m *micTrack) ID() string                 { return "mic" }
func (m *micTrack) RID() string                { return "" }
func (m *micTrack) StreamID() string           { return "webrtctest" }
func (m *micTrack) Kind() pwebrtc.RTPCodecType { return pwebrtc.RTPCodecTypeAudio }

// sendAudio sends one frame, step48k samples long at 48 kHz.
func (m *micTrack) sendAudio(payload []byte, step48k uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w == nil {
		return
	}
	step := step48k * m.clock / 48000
	if !m.inDTMF {
		h := rtp.Header{Version: 2, PayloadType: m.pt, SequenceNumber: m.seq, Timestamp: m.ts, SSRC: m.ssrc}
		_, _ = m.w.WriteRTP(&h, payload)
		m.seq++
	}
	m.ts += step
}

// sendEvent sends one RFC 4733 event of 100 ms (§2.5.1): a first packet
// with the marker bit, updates every 20 ms, and three end packets.
func (m *micTrack) sendEvent(code uint8) error {
	m.mu.Lock()
	if m.w == nil || m.tePT < 0 {
		m.mu.Unlock()
		return ErrNotConnected
	}
	m.inDTMF = true
	ts := m.ts
	step := uint16(m.clock / 50)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.inDTMF = false
		m.mu.Unlock()
	}()
	for i := range 8 {
		end := i >= 5
		dur := uint16(min(i+1, 5)) * step
		ev := transcode.DTMFEvent{Event: code, End: end, Volume: 10, Duration: dur}
		payload := ev.Marshal()
		m.mu.Lock()
		h := rtp.Header{Version: 2, Marker: i == 0, PayloadType: uint8(m.tePT), SequenceNumber: m.seq, Timestamp: ts, SSRC: m.ssrc}
		m.seq++
		w := m.w
		m.mu.Unlock()
		if w != nil {
			if _, err := w.WriteRTP(&h, payload[:]); err != nil {
				return fmt.Errorf("webrtctest: %w", err)
			}
		}
		if i < 5 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
