package webrtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
)

const (
	// pcmRate is the rate of the PCM a Peer takes and gives.
	pcmRate = 8000
	// frameDur is the packet time toward the browser and the period of the
	// media clock.
	frameDur = 20 * time.Millisecond
	// frameSamples is one frame of PCM at pcmRate.
	frameSamples = pcmRate / 50
	// maxQueuedFrames bounds the audio waiting in AudioIn: beyond it the
	// oldest frame is dropped, so that a source clock faster than ours
	// cannot build up latency.
	maxQueuedFrames = 5
	// idleFrames is how long the sender pads a gap in AudioIn with
	// silence before it stops sending until audio comes back.
	idleFrames = 50
	// dtmfTone and dtmfGap shape the in-band feedback beeps of SendDTMF.
	dtmfTone = 120 * time.Millisecond
	dtmfGap  = 80 * time.Millisecond
	// dtmfAmp is the amplitude of each of the two tones of a digit.
	dtmfAmp = 0.2
)

// audioTrack is the local audio track toward the browser. It implements
// pion's TrackLocal so that the codec is chosen at bind time among the
// negotiated ones (Opus, or PCMU/PCMA taken straight from the browser's
// offer) and packets are written with our own timing.
type audioTrack struct {
	p        *Peer
	id       string
	streamID string
}

var _ pwebrtc.TrackLocal = (*audioTrack)(nil)

// Bind picks the first negotiated codec the gateway can encode, in the
// browser's order of preference, and builds the encoder for it. pion
// calls it once negotiation is complete.
func (t *audioTrack) Bind(ctx pwebrtc.TrackLocalContext) (pwebrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		tx, err := t.p.newTx(c, uint32(ctx.SSRC()), ctx.WriteStream())
		if err != nil {
			continue
		}
		t.p.tx.Store(tx)
		t.p.log.Info("webrtc audio send", "codec", tx.codec, "pt", tx.pt, "chain", tx.enc.String())
		return c, nil
	}
	return pwebrtc.RTPCodecParameters{}, ErrNoCommonCodec
}

// Unbind stops sending.
func (t *audioTrack) Unbind(pwebrtc.TrackLocalContext) error {
	t.p.tx.Store(nil)
	return nil
}

// ID returns the track id.
func (t *audioTrack) ID() string { return t.id }

// RID returns the empty RTP stream id: audio is not simulcast.
func (t *audioTrack) RID() string { return "" }

// StreamID returns the media stream id.
func (t *audioTrack) StreamID() string { return t.streamID }

// Kind returns audio.
func (t *audioTrack) Kind() pwebrtc.RTPCodecType { return pwebrtc.RTPCodecTypeAudio }

// txState is the send side once bound. Two goroutines send on the track:
// the media clock's tick (sendTick, which owns the encoder) and, while
// another peer relays its browser's audio here, that peer's reader
// (relayIn). mu serialises them and guards the fields after it.
type txState struct {
	p     *Peer
	codec string
	pt    uint8
	ssrc  uint32
	clock int
	step  uint32 // RTP timestamp units per frame
	w     pwebrtc.TrackLocalWriter
	enc   transcode.PCMWriter

	mu      sync.Mutex
	hdr     rtp.Header // reused for every packet sent
	seq     uint16     // sequence number of the next packet
	ts      uint32     // timestamp of the current media tick
	lastTS  uint32     // timestamp of the last packet sent, either way
	sent    bool       // whether a packet was sent yet
	marker  bool
	running bool // sending frames of its own (AudioIn, prompts, padding)
	idle    int  // ticks since the last frame of its own that was not padding
	errs    int
	relay   relayAnchor
}

// codecName returns the gateway's name of a negotiated audio codec that it
// can encode and decode, or "".
func codecName(mime string) string {
	switch {
	case strings.EqualFold(mime, pwebrtc.MimeTypeOpus):
		return "opus"
	case strings.EqualFold(mime, pwebrtc.MimeTypePCMU):
		return "PCMU"
	case strings.EqualFold(mime, pwebrtc.MimeTypePCMA):
		return "PCMA"
	}
	return ""
}

func (p *Peer) newTx(c pwebrtc.RTPCodecParameters, ssrc uint32, w pwebrtc.TrackLocalWriter) (*txState, error) {
	tx := &txState{
		p:      p,
		codec:  codecName(c.MimeType),
		pt:     uint8(c.PayloadType),
		ssrc:   ssrc,
		w:      w,
		seq:    uint16(rand.Uint32()),
		ts:     rand.Uint32(),
		marker: true,
	}
	var err error
	switch tx.codec {
	case "opus":
		tx.clock = transcode.OpusClockRate
		cfg := p.e.opts.opus
		cfg.Control = p.effort
		tx.enc, err = transcode.NewOpusEncoder(rtpWriter{tx}, pcmRate, cfg)
	case "PCMU":
		tx.clock = pcmRate
		tx.enc, err = transcode.NewULawEncoder(rtpWriter{tx})
	case "PCMA":
		tx.clock = pcmRate
		tx.enc, err = transcode.NewALawEncoder(rtpWriter{tx})
	default:
		return nil, ErrNoCommonCodec
	}
	if err != nil {
		return nil, fmt.Errorf("webrtc: %s encoder: %w", tx.codec, err)
	}
	tx.step = uint32(tx.clock / 50)
	return tx, nil
}

// rtpWriter is the last stage of the send chain: it puts each encoded
// frame in an RTP packet on the track.
type rtpWriter struct{ tx *txState }

func (w rtpWriter) WriteSample(payload []byte) error {
	tx := w.tx
	h := tx.header(tx.marker, tx.seq, tx.ts)
	tx.seq++
	tx.marker = false
	tx.lastTS, tx.sent = tx.ts, true
	n, err := tx.w.WriteRTP(h, payload)
	if err != nil {
		return fmt.Errorf("webrtc: write rtp: %w", err)
	}
	tx.p.txStats.packets.Add(1)
	tx.p.txStats.bytes.Add(uint64(n))
	return nil
}

// header fills the reused header of the track's next packet. tx.mu is
// held. The track writer does not keep it (interceptors that queue
// packets, such as a pacer, copy it), and its extensions' storage is
// reused by those that add some.
func (tx *txState) header(marker bool, seq uint16, ts uint32) *rtp.Header {
	h := &tx.hdr
	*h = rtp.Header{
		Version:        2,
		Marker:         marker,
		PayloadType:    tx.pt,
		SequenceNumber: seq,
		Timestamp:      ts,
		SSRC:           tx.ssrc,
		Extensions:     h.Extensions[:0],
	}
	return h
}

func (w rtpWriter) SampleRate() int { return w.tx.clock }
func (w rtpWriter) String() string  { return fmt.Sprintf("RTP(pt=%d)", w.tx.pt) }
func (w rtpWriter) Close() error    { return nil }

// sendTick sends one frame toward the browser: a DTMF feedback frame,
// else the next frame written to AudioIn, else silence to bridge a short
// gap, unless packets relayed from another browser carry the stream. The
// RTP timestamp advances every tick, sent or not.
func (p *Peer) sendTick(buf, silence transcode.PCM16) {
	tx := p.tx.Load()
	if tx == nil {
		p.in.drain()
		return
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	frame, done := p.prompt.pop()
	if frame == nil {
		minFill := 2 // a frame of slack before starting
		if tx.running {
			minFill = 1
		}
		if p.in.pop(buf, minFill) {
			frame = buf
			tx.idle = 0
		}
	} else {
		tx.idle = 0
	}
	if frame == nil && tx.running {
		if tx.idle++; tx.idle > idleFrames {
			tx.running = false
		} else {
			frame = silence
		}
	}
	if frame != nil {
		if !tx.running {
			tx.running = true
			tx.marker = true // RFC 3551 §4.1: first packet of a talk spurt
		}
		tx.endRelay()
		if err := tx.enc.WriteSample(frame); err != nil {
			// A track closed under us (io.ErrClosedPipe) is the peer
			// connection ending, not a fault: counted, not logged.
			if tx.errs++; tx.errs == 1 && !errors.Is(err, io.ErrClosedPipe) {
				p.log.Warn("webrtc audio send failed", "chain", tx.enc.String(), "err", err.Error())
			}
			p.txStats.errors.Add(1)
		}
	}
	tx.ts += tx.step
	if done != nil {
		close(done)
	}
}

// sendSkip passes over n frames toward the browser that fell due while
// the clock stalled and were not sent: the RTP timestamp advances over
// them, so the browser hears a gap rather than squeezed time, and while
// the peer was sending they are counted. The audio queued meanwhile stays
// (AudioIn bounds its delay).
func (p *Peer) sendSkip(n int) {
	tx := p.tx.Load()
	if tx == nil {
		return
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.ts += tx.step * uint32(n)
	if tx.running {
		p.txStats.skipped.Add(uint64(n))
	}
}

// AudioIn returns the writer of the audio to play to the browser: 8 kHz
// PCM in frames of any length, from one goroutine at a time. Writes only
// queue the audio; the peer encodes and sends it on its own steady 20 ms
// clock, so a bursty source still reaches the browser evenly. At most
// 100 ms waits in the queue: beyond that the oldest audio is dropped
// (counted in Stats), so write audio as it comes rather than in long
// blocks. Audio written before the connection is up is dropped. While
// another peer relays its browser's audio here (RelayAudioTo), what is
// written here comes first. Close on the writer does nothing: the peer
// owns it.
func (p *Peer) AudioIn() transcode.PCMWriter { return p.in }

// audioIn regroups PCM into 20 ms frames and queues them for the media
// clock.
type audioIn struct {
	mu      sync.Mutex
	partial transcode.PCM16
	queue   []transcode.PCM16
	free    []transcode.PCM16
	dropped atomic.Uint64
}

func newAudioIn() *audioIn {
	return &audioIn{partial: make(transcode.PCM16, 0, frameSamples)}
}

// WriteSample queues s.
func (a *audioIn) WriteSample(s transcode.PCM16) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(s) > 0 {
		n := min(frameSamples-len(a.partial), len(s))
		a.partial = append(a.partial, s[:n]...)
		s = s[n:]
		if len(a.partial) < frameSamples {
			break
		}
		if len(a.queue) >= maxQueuedFrames {
			a.free = append(a.free, a.queue[0])
			a.queue = shift(a.queue)
			a.dropped.Add(1)
		}
		a.queue = append(a.queue, a.partial)
		if n := len(a.free); n > 0 {
			a.partial = a.free[n-1][:0]
			a.free = a.free[:n-1]
		} else {
			a.partial = make(transcode.PCM16, 0, frameSamples)
		}
	}
	return nil
}

// pop copies the oldest queued frame into dst when at least minFill
// frames are queued, and reports whether it did.
func (a *audioIn) pop(dst transcode.PCM16, minFill int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) < max(minFill, 1) {
		return false
	}
	f := a.queue[0]
	copy(dst, f)
	a.queue = shift(a.queue)
	if len(a.free) < maxQueuedFrames {
		a.free = append(a.free, f)
	}
	return true
}

// shift removes q's first frame in place: reslicing from the front would
// walk the queue along its backing array and make append allocate a new
// one every few frames.
func shift(q []transcode.PCM16) []transcode.PCM16 {
	n := copy(q, q[1:])
	q[n] = nil
	return q[:n]
}

func (a *audioIn) drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.partial = a.partial[:0]
	a.queue = a.queue[:0]
}

// SampleRate returns 8000.
func (a *audioIn) SampleRate() int { return pcmRate }

// String describes the writer.
func (a *audioIn) String() string { return "WebRTC(in 8000Hz, 20ms clock)" }

// Close does nothing: the Peer owns the writer.
func (a *audioIn) Close() error { return nil }

// promptQueue holds frames that replace AudioIn for a while (the DTMF
// feedback of SendDTMF).
type promptQueue struct {
	mu     sync.Mutex
	frames []promptFrame
}

type promptFrame struct {
	pcm  transcode.PCM16
	done chan struct{}
}

func (q *promptQueue) push(frames []transcode.PCM16) <-chan struct{} {
	done := make(chan struct{})
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, f := range frames {
		pf := promptFrame{pcm: f}
		if i == len(frames)-1 {
			pf.done = done
		}
		q.frames = append(q.frames, pf)
	}
	return done
}

func (q *promptQueue) pop() (transcode.PCM16, chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 {
		return nil, nil
	}
	f := q.frames[0]
	q.frames = q.frames[1:]
	return f.pcm, f.done
}

// abort drops the queued frames and releases their waiters.
func (q *promptQueue) abort() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, f := range q.frames {
		if f.done != nil {
			close(f.done)
		}
	}
	q.frames = nil
}

// SendDTMF plays digits (0-9, *, #, A-D) to the browser as in-band tones,
// as feedback for the customer's key presses, and returns once they have
// been sent. The tones replace the audio from AudioIn while they play.
// It returns an error wrapping transcode.ErrUnknownDigit for a bad digit,
// ErrNoAudio before audio toward the browser is negotiated, and ctx's
// error if ctx ends first (the digits already queued still play).
func (p *Peer) SendDTMF(ctx context.Context, digits string) error {
	if p.ctx.Err() != nil {
		return ErrClosed
	}
	if p.tx.Load() == nil {
		return ErrNoAudio
	}
	tone := int(dtmfTone / (time.Second / pcmRate))
	gap := int(dtmfGap / (time.Second / pcmRate))
	pcm := make(transcode.PCM16, 0, len(digits)*(tone+gap))
	for _, d := range digits {
		t := make(transcode.PCM16, tone)
		if err := transcode.DTMFTone(t, pcmRate, d, dtmfAmp, 0); err != nil {
			return fmt.Errorf("webrtc: send dtmf %q: %w", digits, err)
		}
		pcm = append(pcm, t...)
		pcm = append(pcm, make(transcode.PCM16, gap)...)
	}
	if len(pcm) == 0 {
		return nil
	}
	var frames []transcode.PCM16
	for len(pcm) > 0 {
		n := min(frameSamples, len(pcm))
		f := make(transcode.PCM16, frameSamples)
		copy(f, pcm[:n])
		frames = append(frames, f)
		pcm = pcm[n:]
	}
	done := p.prompt.push(frames)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webrtc: send dtmf: %w", context.Cause(ctx))
	case <-p.ctx.Done():
		return ErrClosed
	}
}

// readSenderRTCP reads the RTCP about our audio (the browser's receiver
// reports, NACKs) so that the interceptors see it, keeps the loss and
// jitter the browser reports, and with opus_complexity: auto adapts the
// Opus encoder's effort to that loss.
func (p *Peer) readSenderRTCP(s *pwebrtc.RTPSender) {
	fec := &fecPolicy{hold: p.e.opts.fecHold}
	defer func() {
		if fec.fec {
			p.e.fecActive.Add(-1)
		}
	}()
	buf := make([]byte, rtcpReadSize)
	for {
		pkts, err := readRTCP(s, buf)
		if err != nil {
			return
		}
		tx := p.tx.Load()
		if tx == nil {
			continue
		}
		for _, pkt := range pkts {
			var reports []rtcp.ReceptionReport
			switch r := pkt.(type) {
			case *rtcp.ReceiverReport:
				reports = r.Reports
			case *rtcp.SenderReport:
				reports = r.Reports
			}
			for _, rb := range reports {
				if rb.SSRC != tx.ssrc {
					continue
				}
				p.txStats.lost.Store(int64(rb.TotalLost))
				p.txStats.fractionLost.Store(uint32(rb.FractionLost))
				if p.e.opts.opusAuto && tx.codec == "opus" && p.effort != nil {
					p.adaptOpusEffort(fec, time.Now(), rb.FractionLost)
				}
				p.txStats.jitter.Store(int64(time.Duration(rb.Jitter) * time.Second / time.Duration(tx.clock)))
				if rb.LastSenderReport != 0 {
					// RFC 3550 §6.4.1: RTT = arrival - LSR - DLSR, in
					// units of 1/65536 s.
					rtt := ntpMiddle(time.Now()) - rb.LastSenderReport - rb.Delay
					if rtt < 1<<31 {
						p.txStats.rtt.Store(int64(time.Duration(rtt) * time.Second / 65536))
					}
				}
			}
		}
	}
}

// ntpMiddle returns the middle 32 bits of the NTP timestamp of t (RFC 3550
// §4): seconds since 1900 in the high half, the fraction in the low half.
func ntpMiddle(t time.Time) uint32 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return uint32(secs<<16 | frac>>16)
}
