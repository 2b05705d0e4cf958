package webrtc

import (
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/rtcp"
)

// Bandwidth toward each browser is estimated with Google Congestion
// Control (pion's send-side GCC, fed by the browser's transport-wide
// congestion control feedback on what the gateway sends). Video is
// forwarded, not encoded, so the gateway cannot lower a bitrate itself:
// it asks the browser that sends the video to do it, with REMB
// (draft-alvestrand-rmcat-remb), capped by what each viewer can take.
// The sender's own uplink is handled by the browser, from the TWCC
// feedback the gateway sends on what it receives.
const (
	// bweStart is the estimate a new peer starts from; it grows within
	// seconds on a good path.
	bweStart = 1_500_000
	// bweMin and bweMax bound every estimate.
	bweMin = 100_000
	bweMax = 10_000_000
	// videoTrackMax is the most a single forwarded video track is given
	// room for; it caps tracks nobody watches yet.
	videoTrackMax = 2_500_000
	// audioAllowance is kept for a browser's own audio in the cap sent to
	// it, and viewerAudio for the Opus the gateway sends a viewer, when an
	// estimate is shared among video tracks.
	audioAllowance = 64_000
	viewerAudio    = 40_000
	// headroom lets a sender go a quarter above the viewer's estimate.
	// GCC never raises an estimate past 1.5 times what arrived, and the
	// gateway cannot send padding to probe a viewer's link the way a
	// browser probes its own: a cap held at the estimate would keep a
	// sender that sends a little under it low long after the link has
	// recovered. The extra quarter is the probe; on a link that really
	// is full, delay and loss bring the estimate back down.
	headroom = 1.25
	// videoTrackMin is the floor of one track's share: below it video
	// stops being useful, and loss-based recovery needs some traffic.
	videoTrackMin = 50_000
	// rembInterval is how often the cap is sent to a browser sending
	// video (RFC 4585 §3.4: feedback at least once per second keeps
	// senders from probing past it).
	rembInterval = 500 * time.Millisecond
)

// bweFactory builds, for each peer connection, a GCC estimator and the
// NACK guard (nack.go) that budgets resends by it. Pion builds a peer
// connection's interceptors inside NewPeerConnection, so the Engine takes
// them out right after, under mu.
type bweFactory struct {
	// nacks counts for the whole Engine.
	nacks nackCounters

	mu    sync.Mutex
	last  *lazyBWE
	guard *nackGuard
}

// NewInterceptor implements interceptor.Factory. The guard comes first in
// the chain, nearest the network: it sees every packet that goes out,
// resends included, and cuts NACKs down before anything reads them.
func (f *bweFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	est := &lazyBWE{}
	guard := newNACKGuard(est.GetTargetBitrate, &f.nacks)
	f.last, f.guard = est, guard
	return interceptor.NewChain([]interceptor.Interceptor{guard, &bweInterceptor{est: est}}), nil
}

// take returns the estimator and the guard built by the last
// NewInterceptor call. The caller holds mu around the peer connection's
// creation.
func (f *bweFactory) take() (*lazyBWE, *nackGuard) {
	est, guard := f.last, f.guard
	f.last, f.guard = nil, nil
	return est, guard
}

// lazyBWE is a peer connection's GCC estimator, built when the gateway
// first sends it video. Only video carries transport-wide sequence
// numbers, so until then the estimator could learn nothing and would
// stay at bweStart; building it costs two goroutines and their state,
// which the audio-only peer of every call would keep for nothing.
type lazyBWE struct {
	mu     sync.Mutex
	est    *gcc.SendSideBWE
	err    error // why the estimator could not be built
	closed bool
}

// start returns the estimator, building it on first use; nil once closed
// or if it could not be built.
func (l *lazyBWE) start() *gcc.SendSideBWE {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.est != nil || l.closed || l.err != nil {
		return l.est
	}
	l.est, l.err = gcc.NewSendSideBWE(
		gcc.SendSideBWEInitialBitrate(bweStart),
		gcc.SendSideBWEMinBitrate(bweMin),
		gcc.SendSideBWEMaxBitrate(bweMax),
		// Forwarded packets go out as they come: the browser that sent
		// them paced them already.
		gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
	)
	return l.est
}

// built returns the estimator if it exists.
func (l *lazyBWE) built() *gcc.SendSideBWE {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.est
}

// GetTargetBitrate returns the estimate toward the browser, bweStart
// until video is sent.
func (l *lazyBWE) GetTargetBitrate() int {
	if est := l.built(); est != nil {
		return est.GetTargetBitrate()
	}
	return bweStart
}

// Close closes the estimator, if built, and keeps it from being built.
func (l *lazyBWE) Close() error {
	l.mu.Lock()
	est := l.est
	l.closed = true
	l.mu.Unlock()
	if est == nil {
		return nil
	}
	return est.Close()
}

// bweInterceptor feeds one peer connection's outgoing RTP and incoming
// RTCP to its estimator. Unlike pion's cc interceptor it never fails an
// RTCP read because of a feedback packet the estimator did not like: the
// reader also carries key frame requests and receiver reports.
type bweInterceptor struct {
	interceptor.NoOp
	est *lazyBWE
}

// BindRTCPReader implements interceptor.Interceptor.
func (b *bweInterceptor) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(buf, a)
		if err != nil {
			return n, attr, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, perr := attr.GetRTCPPackets(buf[:n])
		if perr == nil && hasCongestionFeedback(pkts) {
			// Feedback before any video is sent has nothing to say
			// about what the estimator would track.
			if est := b.est.built(); est != nil {
				_ = est.WriteRTCP(pkts, attr)
			}
		}
		return n, attr, nil
	})
}

// hasCongestionFeedback reports whether pkts hold transport-wide
// feedback, the only packets the estimator reads.
func hasCongestionFeedback(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.TransportLayerCC, *rtcp.CCFeedbackReport:
			return true
		}
	}
	return false
}

// BindLocalStream implements interceptor.Interceptor. Only video goes
// through the estimator: audio carries no transport-wide sequence numbers
// (registerInterceptors), so the estimator could learn nothing from it,
// yet would keep a record of every audio packet sent (2 allocations each)
// for feedback that never comes.
func (b *bweInterceptor) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if strings.HasPrefix(strings.ToLower(info.MimeType), "audio/") {
		return writer
	}
	est := b.est.start()
	if est == nil {
		return writer
	}
	return est.AddStream(info, writer)
}

// Close implements interceptor.Interceptor.
func (b *bweInterceptor) Close() error { return b.est.Close() }

// SendEstimate returns the estimated bandwidth toward the browser, in
// bits per second, or 0 when the peer has no estimator.
func (p *Peer) SendEstimate() int {
	if p.bwe == nil {
		return 0
	}
	return p.bwe.GetTargetBitrate()
}

// videoShare is the bitrate one forwarded track may use toward p: the
// estimate with its headroom, less the audio, split evenly among the
// forwarded tracks.
func (p *Peer) videoShare() int {
	n := int(p.forwarded.Load())
	if n == 0 || p.bwe == nil {
		return videoTrackMax
	}
	return min(videoTrackMax, max(videoTrackMin, int(float64(p.SendEstimate())*headroom-viewerAudio)/n))
}

// videoCap is the bitrate p's browser should send its video at, so that
// every viewer can take every track: for each track, the smallest share
// among its viewers. ok is false when no track is forwarded, and nothing
// needs limiting.
func (p *Peer) videoCap() (bps int, ssrcs []uint32, ok bool) {
	for _, v := range p.Videos() {
		track := videoTrackMax
		v.mu.Lock()
		for _, f := range v.sinks {
			track = min(track, f.dst.videoShare())
			ok = true
		}
		v.mu.Unlock()
		bps += track
		ssrcs = append(ssrcs, uint32(v.track.SSRC()))
	}
	return bps + audioAllowance, ssrcs, ok
}

// rembLoop tells p's browser, every rembInterval while any of its video
// is forwarded, the most it should send (RTCP REMB). The browser keeps
// the lower of this and its own estimate of its uplink.
func (p *Peer) rembLoop() {
	t := time.NewTicker(rembInterval)
	defer t.Stop()
	last := 0
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		bps, ssrcs, ok := p.videoCap()
		if !ok {
			continue
		}
		err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bps), SSRCs: ssrcs}})
		if err != nil {
			p.log.Debug("webrtc remb", "err", err.Error())
			continue
		}
		if last == 0 || bps < last*9/10 || bps > last*11/10 {
			p.log.Debug("webrtc video cap", "bps", bps)
			last = bps
		}
	}
}
