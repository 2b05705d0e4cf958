package webrtc

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
)

// flowingWindow is how recent the last audio packet must be for
// AudioFlowing to report true.
const flowingWindow = time.Second

// rxState is the receive chain of the browser's audio: jitter buffer, then
// decoder into the peer's output switch. The reader goroutine pushes
// packets; the media clock's tick pops one frame per frame due.
type rxState struct {
	mu     sync.Mutex
	codec  string
	pt     uint8
	jitter *transcode.Jitter
	dec    transcode.BytesWriter
	failed bool
	errs   int
	// relaying is set while the packets go to another peer instead of the
	// jitter buffer (audio_relay.go). Only the reader goroutine uses it.
	relaying bool
	// pkts recycles the copies of packets the jitter buffer holds: the
	// reader takes one per packet and the tick gives it back once
	// decoded, so that receiving allocates nothing in steady state.
	pkts sync.Pool
}

// hold returns a copy of pkt, parsed already, for the jitter buffer: its
// header fields that the buffer and the decoder read, and its payload.
func (rx *rxState) hold(pkt *rtp.Packet) *rtp.Packet {
	c, _ := rx.pkts.Get().(*rtp.Packet)
	if c == nil {
		c = &rtp.Packet{}
	}
	c.Header = rtp.Header{Version: pkt.Version, Marker: pkt.Marker, PayloadType: pkt.PayloadType,
		SequenceNumber: pkt.SequenceNumber, Timestamp: pkt.Timestamp, SSRC: pkt.SSRC}
	c.Payload = append(c.Payload[:0], pkt.Payload...)
	return c
}

func (p *Peer) newRx(c pwebrtc.RTPCodecParameters) (*rxState, error) {
	rx := &rxState{codec: codecName(c.MimeType), pt: uint8(c.PayloadType)}
	clock := pcmRate
	var err error
	switch rx.codec {
	case "opus":
		clock = transcode.OpusClockRate
		rx.dec, err = transcode.NewOpusDecoder(p.out)
	case "PCMU":
		rx.dec, err = transcode.NewULawDecoder(p.out)
	case "PCMA":
		rx.dec, err = transcode.NewALawDecoder(p.out)
	default:
		return nil, fmt.Errorf("%w: %s", ErrNoCommonCodec, c.MimeType)
	}
	if err != nil {
		return nil, fmt.Errorf("webrtc: %s decoder: %w", rx.codec, err)
	}
	rx.jitter, err = transcode.NewJitter(transcode.JitterConfig{
		ClockRate: clock,
		Frame:     frameDur,
		MinDelay:  p.e.opts.jitterMin,
		MaxDelay:  p.e.opts.jitterMax,
		Now:       p.e.opts.now,
	})
	if err != nil {
		return nil, fmt.Errorf("webrtc: jitter buffer: %w", err)
	}
	return rx, nil
}

// SwapAudioOut sets where the browser's audio goes, as 8 kHz PCM in 20 ms
// frames, and returns the previous writer, which the caller closes. A nil
// w disconnects the output. Wrap a writer of another rate with
// transcode.Resample. Writes to w happen on the shared media clock's
// goroutine, which also paces the audio toward the browser and other
// calls' media, so w must not block; its errors are counted and do not
// stop the peer. Nothing is written
// while the browser sends nothing (before it starts, or in DTX silence),
// nor while its packets are relayed to another peer (RelayAudioTo); a lost
// packet is concealed with a frame of its own.
func (p *Peer) SwapAudioOut(w transcode.PCMWriter) (old transcode.PCMWriter) {
	return p.out.Swap(w)
}

// AudioCodec returns the audio codec negotiated with the browser ("opus",
// "PCMU" or "PCMA"), from the send side once it is bound, else from the
// receive side, or "" before negotiation.
func (p *Peer) AudioCodec() string {
	if tx := p.tx.Load(); tx != nil {
		return tx.codec
	}
	if rx := p.rx.Load(); rx != nil {
		return rx.codec
	}
	return ""
}

// AudioFlowing reports whether audio packets arrived from the browser in
// the last second. A muted microphone in a browser still sends (silent)
// packets, so false means a network or negotiation problem rather than
// mute.
func (p *Peer) AudioFlowing() bool {
	last := p.rxStats.last.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < flowingWindow
}

// startAudioReceive starts the reader of the browser's audio track.
func (p *Peer) startAudioReceive(track *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
	p.spawn(func() { p.audioReadLoop(track, recv) })
	p.spawn(func() { drainRTCP(recv) })
}

// audioReadLoop reads the browser's audio until the track ends.
func (p *Peer) audioReadLoop(track *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
	r := &audioReader{p: p, params: func() []pwebrtc.RTPCodecParameters { return recv.GetParameters().Codecs }}
	defer func() {
		if r.rx != nil {
			p.rxStats.final.Store(r.rx.counts())
			p.rx.CompareAndSwap(r.rx, nil)
		}
	}()
	r.refresh()
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		r.packet(buf[:n])
	}
}

// audioReader takes the packets of the browser's audio track, one at a
// time: audio goes to the peer it is relayed to (RelayAudioTo) or to the
// jitter buffer, telephone-events to OnDTMF. A packet that cannot be
// parsed is counted and skipped.
type audioReader struct {
	p      *Peer
	params func() []pwebrtc.RTPCodecParameters // the receiver's codecs
	codecs map[uint8]pwebrtc.RTPCodecParameters
	dtmf   transcode.DTMFReceiver
	seq    seqCounter
	rx     *rxState
	pkt    rtp.Packet // parsed in place, for every packet
}

func (r *audioReader) refresh() {
	if r.codecs == nil {
		r.codecs = map[uint8]pwebrtc.RTPCodecParameters{}
	}
	for _, c := range r.params() {
		r.codecs[uint8(c.PayloadType)] = c
	}
}

// packet handles one packet; b is only read during the call. A relayed
// packet is not copied.
func (r *audioReader) packet(b []byte) {
	p, pkt := r.p, &r.pkt
	if err := pkt.Unmarshal(b); err != nil {
		p.rxStats.malformed.Add(1)
		return
	}
	p.rxStats.packets.Add(1)
	p.rxStats.bytes.Add(uint64(len(b)))
	p.rxStats.arrived(time.Now())
	p.rxStats.lost.Store(r.seq.update(pkt.SSRC, pkt.SequenceNumber))
	if rx := r.rx; rx != nil && pkt.PayloadType == rx.pt {
		if !p.relay(rx, pkt) {
			rx.jitter.Push(rx.hold(pkt))
		}
		return
	}

	c, ok := r.codecs[pkt.PayloadType]
	if !ok {
		r.refresh()
		c, ok = r.codecs[pkt.PayloadType]
	}
	switch {
	case !ok:
		p.rxStats.malformed.Add(1)
	case strings.EqualFold(c.MimeType, mimeTelephoneEvent):
		d, ok, err := r.dtmf.Receive(pkt.Timestamp, pkt.Payload)
		if err != nil || !ok {
			return
		}
		p.log.Debug("webrtc dtmf received", "digit", string(d))
		if p.opts.OnDTMF != nil {
			p.post(func() { p.opts.OnDTMF(d) })
		}
	case codecName(c.MimeType) != "":
		// The first audio packet, or a codec change after a
		// renegotiation.
		rx, err := p.newRx(c)
		if err != nil {
			p.log.Warn("webrtc audio receive", "err", err.Error())
			return
		}
		p.log.Info("webrtc audio receive", "codec", rx.codec, "pt", rx.pt, "ssrc", pkt.SSRC, "chain", rx.dec.String())
		p.rx.Store(rx)
		r.rx = rx
		if !p.relay(rx, pkt) {
			rx.jitter.Push(rx.hold(pkt))
		}
	}
}

// recvTick plays one frame of the browser's audio out of the jitter
// buffer into the output writer.
func (p *Peer) recvTick() {
	rx := p.rx.Load()
	if rx == nil {
		return
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if rx.failed {
		return
	}
	_, err := rx.popTo()
	if err == nil {
		return
	}
	switch {
	case errors.Is(err, transcode.ErrBadPacket):
		p.rxStats.malformed.Add(1)
		if rx.errs++; rx.errs == 1 {
			p.log.Warn("webrtc bad audio packet from browser", "chain", rx.dec.String(), "err", err.Error())
		}
	case errors.Is(err, transcode.ErrCodecPanic), errors.Is(err, errDecoderPanic):
		rx.failed = true
		p.log.Error("webrtc audio decoder failed", "chain", rx.dec.String(), "err", err.Error())
		p.fail(fmt.Errorf("%w: %w", ErrMediaFailed, err))
	case errors.Is(err, transcode.ErrClosed):
		// The output was closed under us: the call it fed is ending.
		p.rxStats.outErrors.Add(1)
	default:
		// The output writer failed: count it and go on.
		p.rxStats.outErrors.Add(1)
		if rx.errs++; rx.errs == 1 {
			p.log.Warn("webrtc audio out failed", "chain", rx.dec.String(), "err", err.Error())
		}
	}
}

// errDecoderPanic marks a panic recovered around the decode chain.
var errDecoderPanic = errors.New("webrtc: audio chain panicked")

// popTo runs one jitter buffer tick into the decoder, turning a panic anywhere in
// the chain into an error.
func (rx *rxState) popTo() (st transcode.JitterStatus, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errDecoderPanic, r)
		}
	}()
	// As transcode.Jitter.PopTo, giving the played packet back to pkts.
	p, st := rx.jitter.Pop()
	switch st {
	case transcode.JitterReady:
		err = rx.dec.WriteSample(p.Payload)
		rx.pkts.Put(p)
		return st, err
	case transcode.JitterLost:
		var next []byte
		if n := rx.jitter.Next(); n != nil {
			next = n.Payload
		}
		return st, transcode.Conceal(rx.dec, next)
	}
	return st, nil
}

// mediaTick is the peer's share of a tick of the shared media clock:
// frames skipped during a stall first (toward the browser only: the
// browser's packets wait in the jitter buffer, which sheds a surplus
// itself), then run frames played from the browser's audio to the output
// writer and sent to the browser.
func (p *Peer) mediaTick(run, skipped int) {
	if p.ctx.Err() != nil {
		return
	}
	if skipped > 0 {
		p.sendSkip(skipped)
	}
	for range run {
		p.recvTick()
		p.sendTick(p.tickBuf, p.silence)
	}
}

// seqCounter counts lost packets from RTP sequence numbers (RFC 3550
// §6.4.1 and Appendix A.3): expected minus received, over the extended
// sequence range.
type seqCounter struct {
	started  bool
	ssrc     uint32
	base     uint32
	max      uint32 // extended highest sequence number
	received int64
}

func (s *seqCounter) update(ssrc uint32, seq uint16) int64 {
	if !s.started || ssrc != s.ssrc {
		*s = seqCounter{started: true, ssrc: ssrc, base: uint32(seq), max: uint32(seq)}
	}
	s.received++
	cycles := s.max &^ 0xffff
	ext := cycles | uint32(seq)
	switch d := int32(ext - s.max); {
	case d < -0x8000:
		ext += 0x10000
	case d > 0x8000:
		ext -= 0x10000
	}
	if int32(ext-s.max) > 0 {
		s.max = ext
	}
	lost := int64(s.max-s.base+1) - s.received
	return max(lost, 0)
}
