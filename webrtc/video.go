package webrtc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

// keyFrameInterval is the shortest interval between two key frame
// requests sent to a browser for one track, however many viewers ask.
const keyFrameInterval = 500 * time.Millisecond

// RemoteVideo is a video track a browser sends (camera or screen share).
// Its packets go untouched to every Forwarder made from it. Its methods
// are safe for concurrent use.
type RemoteVideo struct {
	p     *Peer
	track *pwebrtc.TrackRemote
	recv  *pwebrtc.RTPReceiver
	done  chan struct{}

	// fwdID is the track id forwarded copies carry: made by the
	// gateway, unique, never the browser's own.
	fwdID string

	mu    sync.Mutex
	sinks []*Forwarder

	lastKeyReq atomic.Int64 // unix nanoseconds
	packets    atomic.Uint64
	bytes      atomic.Uint64
}

// ID returns the track id the browser gave (MediaStreamTrack.id).
func (v *RemoteVideo) ID() string { return v.track.ID() }

// StreamID returns the browser's media stream id, which tells a camera
// from a screen share when the page uses one stream for each.
func (v *RemoteVideo) StreamID() string { return v.track.StreamID() }

// ForwardedID returns the track id that Forwarders give the track toward
// other browsers: made by the gateway and unique among the tracks it
// receives, so it also names this track and no other.
func (v *RemoteVideo) ForwardedID() string { return v.fwdID }

// ForwardedStreamID returns the stream id that Forwarders give the
// track: Peer.ForwardedStreamID of its browser's stream id.
func (v *RemoteVideo) ForwardedStreamID() string { return v.p.ForwardedStreamID(v.StreamID()) }

// ForwardedStreamID returns the stream id under which this peer's
// browser's stream browserStreamID is forwarded to other browsers: a
// keyed hash, so that the ids a browser chose (msid, RFC 8830) never
// reach another browser's SDP verbatim, while each stream keeps one id
// the two pages can name it by (a screen share's media.event).
func (p *Peer) ForwardedStreamID(browserStreamID string) string {
	m := hmac.New(sha256.New, p.streamKey[:])
	m.Write([]byte(browserStreamID))
	return "s" + hex.EncodeToString(m.Sum(nil)[:12])
}

// newTrackID returns a random track id for a forwarded track.
func newTrackID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "v" + hex.EncodeToString(b[:])
}

// MimeType returns the codec, e.g. "video/VP8".
func (v *RemoteVideo) MimeType() string { return v.track.Codec().MimeType }

// Done is closed when the browser stops sending the track (removed by a
// renegotiation, or the peer ended).
func (v *RemoteVideo) Done() <-chan struct{} { return v.done }

// Packets returns how many RTP packets and bytes were received.
func (v *RemoteVideo) Packets() (packets, bytes uint64) {
	return v.packets.Load(), v.bytes.Load()
}

// RequestKeyFrame asks the browser for a key frame (RTCP PLI, RFC 4585
// §6.3.1), at most once per 500 ms; extra requests are absorbed.
func (v *RemoteVideo) RequestKeyFrame() error {
	now := time.Now().UnixNano()
	last := v.lastKeyReq.Load()
	if now-last < int64(keyFrameInterval) || !v.lastKeyReq.CompareAndSwap(last, now) {
		return nil
	}
	err := v.p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(v.track.SSRC())}})
	if err != nil {
		return fmt.Errorf("webrtc: request key frame: %w", err)
	}
	v.p.e.relay.keyFrames.Add(1)
	return nil
}

// Videos returns the video tracks the browser is sending now, for a
// Forwarder made after OnVideoTrack fired (the agent turning on the
// customer's video later, or joining after the camera started).
func (p *Peer) Videos() []*RemoteVideo {
	p.videoMu.Lock()
	defer p.videoMu.Unlock()
	live := p.videos[:0]
	for _, v := range p.videos {
		select {
		case <-v.done:
		default:
			live = append(live, v)
		}
	}
	p.videos = live
	return append([]*RemoteVideo(nil), live...)
}

func (p *Peer) startVideoReceive(track *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
	v := &RemoteVideo{p: p, track: track, recv: recv, done: make(chan struct{}), fwdID: newTrackID()}
	if !p.spawn(func() { v.readLoop() }) {
		return
	}
	p.spawn(func() { drainRTCP(recv) })
	p.videoMu.Lock()
	p.videos = append(p.videos, v)
	p.videoMu.Unlock()
	p.log.Info("webrtc video receive", "codec", v.MimeType(), "track", v.ID(), "stream", v.StreamID())
	if p.opts.OnVideoTrack != nil {
		p.post(func() { p.opts.OnVideoTrack(v) })
	}
}

// readLoop relays each packet to the forwarders. The payload is never
// touched; header extensions, negotiated with this browser only, are
// dropped, and each destination track sets its own SSRC and payload type.
func (v *RemoteVideo) readLoop() {
	defer close(v.done)
	buf := make([]byte, 1500)
	for {
		n, _, err := v.track.Read(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		v.packets.Add(1)
		v.bytes.Add(uint64(n))
		pkt.Header.Extension = false
		pkt.Header.Extensions = nil
		v.mu.Lock()
		sinks := v.sinks
		v.mu.Unlock()
		for _, f := range sinks {
			f.write(&pkt)
		}
	}
}

// Forwarder relays one browser's video track to another peer, SFU-style,
// without transcoding: RTP goes from the source to a local track of the
// destination, and the destination browser's key frame requests (PLI,
// FIR) go back to the source. Its NACKs are answered from the
// destination's packet cache (pion's NACK responder).
type Forwarder struct {
	src    *RemoteVideo
	dst    *Peer
	local  *pwebrtc.TrackLocalStaticRTP
	sender *pwebrtc.RTPSender
	done   chan struct{}

	once     sync.Once
	closeErr error
	packets  atomic.Uint64
	errs     atomic.Uint64
}

// NewForwarder starts relaying src to dst. It adds a track to dst, so the
// destination browser must be told: call dst.Offer and pass its answer to
// dst.SetAnswer (PeerOptions.OnNegotiationNeeded fires too). Close the
// Forwarder when src is Done or the relay is no longer wanted.
func NewForwarder(src *RemoteVideo, dst *Peer) (*Forwarder, error) {
	if src.track.Kind() != pwebrtc.RTPCodecTypeVideo {
		return nil, ErrKindMismatch
	}
	if dst.ctx.Err() != nil {
		return nil, ErrClosed
	}
	codec := src.track.Codec().RTPCodecCapability
	local, err := pwebrtc.NewTrackLocalStaticRTP(codec, src.ForwardedID(), src.ForwardedStreamID())
	if err != nil {
		return nil, fmt.Errorf("webrtc: forward track: %w", err)
	}
	sender, err := dst.pc.AddTrack(local)
	if err != nil {
		return nil, fmt.Errorf("webrtc: forward track: %w", err)
	}
	f := &Forwarder{src: src, dst: dst, local: local, sender: sender, done: make(chan struct{})}
	if !dst.spawn(f.readRTCP) {
		_ = dst.pc.RemoveTrack(sender)
		return nil, ErrClosed
	}
	dst.forwarded.Add(1)
	src.mu.Lock()
	src.sinks = append(append([]*Forwarder(nil), src.sinks...), f)
	src.mu.Unlock()
	src.p.rembOnce.Do(func() { src.p.spawn(src.p.rembLoop) })
	dst.negotiationNeeded()
	dst.log.Info("webrtc video forward", "codec", codec.MimeType, "track", src.ID(), "from", src.p.opts.Name)
	return f, nil
}

func (f *Forwarder) write(pkt *rtp.Packet) {
	if err := f.local.WriteRTP(pkt); err != nil {
		f.errs.Add(1)
		return
	}
	f.packets.Add(1)
	f.dst.e.relay.packets.Add(1)
	f.dst.e.relay.bytes.Add(uint64(pkt.MarshalSize()))
}

// readRTCP passes the destination browser's key frame requests to the
// source browser; reading also feeds the NACK responder.
func (f *Forwarder) readRTCP() {
	defer close(f.done)
	buf := make([]byte, rtcpReadSize)
	for {
		pkts, err := readRTCP(f.sender, buf)
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if err := f.src.RequestKeyFrame(); err != nil {
					f.dst.log.Debug("webrtc key frame request", "err", err.Error())
				}
			}
		}
	}
}

// Packets returns how many packets were relayed.
func (f *Forwarder) Packets() uint64 { return f.packets.Load() }

// Close stops the relay and removes the track from the destination peer
// (which needs a renegotiation to tell its browser). It is idempotent and
// waits for the goroutine it started.
func (f *Forwarder) Close() error {
	f.once.Do(func() {
		f.src.mu.Lock()
		sinks := make([]*Forwarder, 0, len(f.src.sinks))
		for _, s := range f.src.sinks {
			if s != f {
				sinks = append(sinks, s)
			}
		}
		f.src.sinks = sinks
		f.src.mu.Unlock()
		f.dst.forwarded.Add(-1)
		if f.dst.ctx.Err() == nil {
			if err := f.dst.pc.RemoveTrack(f.sender); err != nil {
				f.closeErr = fmt.Errorf("webrtc: remove forwarded track: %w", err)
			} else {
				f.dst.negotiationNeeded()
			}
		}
		// Stopping twice is harmless; it ends readRTCP whatever happened
		// above.
		_ = f.sender.Stop()
		<-f.done
	})
	return f.closeErr
}
