package sip

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"github.com/segue-rtc/segue/mediaclock"
	"github.com/segue-rtc/segue/transcode"
)

const (
	frameSamples  = 160 // 20 ms at 8 kHz
	frameDuration = 20 * time.Millisecond
	// sendQueueSamples bounds what AudioIn buffers ahead of the clock (400 ms).
	sendQueueSamples = 3200
	rtcpEvery        = 250 // default send loop ticks between RTCP reports (5 s)
	dtmfToneTicks    = 5   // 100 ms of tone per digit
	dtmfGapTicks     = 3   // 60 ms pause between digits
	// latchPackets is how many consecutive in-sequence packets of one SSRC
	// a new source must send before a symmetric_rtp session latches onto it.
	latchPackets = 5
	// foreignLogEvery is how often, at most, a session logs the packets it
	// dropped for their source (the first one is logged at once).
	foreignLogEvery = 10 * time.Second
)

// MediaStats counts what an RTP session sent and received.
type MediaStats struct {
	Codec           string
	Remote          string // where RTP is sent: the SDP address, or the source latched onto (symmetric_rtp)
	PacketsSent     uint64
	BytesSent       uint64
	PacketsReceived uint64
	BytesReceived   uint64
	// PacketsLost is expected minus received (RFC 3550 §6.4.1), never negative.
	PacketsLost uint64
	// PacketsLate counts packets the jitter buffer dropped as duplicate or
	// too late to play.
	PacketsLate uint64
	// Concealed counts 20 ms frames filled in by loss concealment.
	Concealed uint64
	// PacketsForeign counts RTP packets dropped because they came from
	// another source than the far end's SDP address (or, with
	// symmetric_rtp, the source latched onto).
	PacketsForeign uint64
	// RTCPForeign counts RTCP packets dropped because they came from
	// another IP address than the far end's.
	RTCPForeign uint64
	// JitterMs is the RFC 3550 §6.4.1 interarrival jitter in milliseconds.
	JitterMs     float64
	RTCPReceived uint64
	RTCPSent     uint64
	// SRTP is true when media is encrypted (SDES, RTP/SAVP).
	SRTP bool
	// SRTPFailures counts packets that failed SRTP authentication.
	SRTPFailures uint64

	// The counters below are frames the gateway itself failed to carry,
	// each 20 ms of audio, apart from what the network lost.

	// FramesSkippedSend counts 20 ms frames toward the far end that were
	// never sent because the media clock stalled for longer than it
	// catches up on (mediaclock.MaxBurst frames); the RTP timestamp still
	// advances over them, so the far end hears a gap rather than
	// squeezed time.
	FramesSkippedSend uint64
	// FramesDroppedSend counts 20 ms frames of audio dropped from the
	// send queue because more than 400 ms waited in it.
	FramesDroppedSend uint64
	// FramesDroppedReceive counts the far end's packets the jitter
	// buffer discarded to keep its delay bounded (it held more than its
	// maximum delay, as after a stall of the playout). A stalled playout
	// skips nothing itself: the packets wait in the buffer.
	FramesDroppedReceive uint64
}

// GatewayDropsSend returns the frames toward the far end that the gateway
// failed to send (skipped or dropped).
func (m MediaStats) GatewayDropsSend() uint64 { return m.FramesSkippedSend + m.FramesDroppedSend }

// GatewayDropsReceive returns the far end's frames that the gateway
// received but did not play.
func (m MediaStats) GatewayDropsReceive() uint64 { return m.FramesDroppedReceive }

type dtmfReq struct {
	digits []byte
	done   chan struct{}
}

// sourcePolicy says which far-end addresses an RTP session takes media
// from. By default (strict source) RTP is accepted only from the address
// and port the far end's SDP gave, and RTCP only from its RTCP address's
// IP. With symmetric set (trunks[].symmetric_rtp, for a PBX or phones
// behind NAT) the session may latch onto another source, but only one
// whose IP is allowed (or is the SDP's IP) and only after latchPackets
// consecutive in-sequence packets of one SSRC from it.
type sourcePolicy struct {
	symmetric bool
	// allowed reports whether ip may become the latched source in
	// symmetric mode: the trunk's allow_inbound_from. nil allows none
	// but the SDP's IP.
	allowed func(ip netip.Addr) bool
}

// foreignCounter counts media packets dropped for their source across
// every session of a Server, for metrics.
type foreignCounter struct{ rtp, rtcp atomic.Uint64 }

// latchCandidate is a source a symmetric session is watching: it becomes
// the latched source once n reaches latchPackets.
type latchCandidate struct {
	from netip.AddrPort
	ssrc uint32
	seq  uint16
	n    int
}

// foreignLog rate-limits the log line for dropped packets of one kind:
// the first drop is logged, then at most one line per foreignLogEvery
// with the number dropped since the last line.
type foreignLog struct {
	next    time.Time
	dropped uint64
}

// note records one drop at now and reports whether to log it, with the
// number of drops the line stands for.
func (f *foreignLog) note(now time.Time) (bool, uint64) {
	f.dropped++
	if now.Before(f.next) {
		return false, 0
	}
	n := f.dropped
	f.dropped, f.next = 0, now.Add(foreignLogEvery)
	return true, n
}

// rtpSession is one RTP/RTCP port pair carrying G.711 and telephone-event.
// Its read loop puts received packets in the jitter buffer; on each tick
// of the shared media clock it sends one frame and plays one out into the
// current output writer.
type rtpSession struct {
	conn      *net.UDPConn
	rtcpC     *net.UDPConn
	port      int
	pool      *portPool
	onDTMF    func(digit rune)
	rtcpEvery int
	policy    sourcePolicy
	foreign   *foreignCounter // server-wide; nil in some tests

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	begin  sync.Once
	// leg is the session's place on the media clock, from start to close.
	leg *mediaclock.Leg
	// Owned by the clock's tick: the send buffers and the tick count.
	sendBuf []byte
	encBuf  []byte
	frame   [frameSamples]int16
	ticks   int
	dropped int // samples dropped from the send queue, guarded by mu

	mu       sync.Mutex
	log      *slog.Logger
	codec    Codec
	sendDTMF int // payload type for sending telephone-event, -1 none
	recvDTMF int // payload type we announced for receiving
	dir      Direction
	// sdpRemote and sdpRTCP are where the far end's SDP says it receives
	// RTP and RTCP. latched is the source RTP is taken from and sent to:
	// sdpRemote, or with symmetric_rtp a source latched onto since.
	sdpRemote netip.AddrPort
	sdpRTCP   netip.AddrPort
	latched   netip.AddrPort
	rtcpDst   netip.AddrPort
	cand      latchCandidate
	rtpWarn   foreignLog
	rtcpWarn  foreignLog
	ssrc      uint32
	seq       uint16
	ts        uint32
	ring      [sendQueueSamples]int16
	rHead     int
	rLen      int
	dtmfQ     []dtmfReq
	dtmfCur   int // index of the next digit to start in dtmfQ[0]
	dtmf      *transcode.DTMFSender
	dtmfGap   int
	st        MediaStats
	// receive state (RFC 3550 A.1)
	rStarted   bool
	rSSRC      uint32
	rBaseSeq   uint16
	rMaxSeq    uint16
	rCycles    uint32
	rTransit   int64
	rJitter    float64
	rLastEvTS  uint32
	rLastEvSet bool
	rLastSR    uint32

	srtp *srtpPair // nil for plain RTP; guarded by mu

	// Receive path: packets wait in the jitter buffer; the playout loop
	// takes one every 20 ms and decodes it (or conceals a loss) into out.
	jb      *transcode.Jitter
	pkts    sync.Pool // *rtp.Packet owned by jb until popped
	ulawDec transcode.BytesWriter
	alawDec transcode.BytesWriter
	lastDec transcode.BytesWriter // playout loop only

	outMu sync.Mutex
	out   transcode.PCMWriter
}

// outFwd is the end of the decoder chains: it passes PCM to the current
// output writer (SwapAudioOut) under outMu.
type outFwd struct{ s *rtpSession }

func (o outFwd) WriteSample(p transcode.PCM16) error {
	o.s.outMu.Lock()
	defer o.s.outMu.Unlock()
	if o.s.out == nil {
		return nil
	}
	return o.s.out.WriteSample(p)
}
func (o outFwd) SampleRate() int { return 8000 }
func (o outFwd) String() string {
	o.s.outMu.Lock()
	defer o.s.outMu.Unlock()
	if o.s.out == nil {
		return "discard"
	}
	return o.s.out.String()
}
func (o outFwd) Close() error { return nil }

func newRTPSession(log *slog.Logger, pool *portPool, ip netip.Addr, policy sourcePolicy, foreign *foreignCounter) (*rtpSession, error) {
	c, rc, port, err := pool.listen(ip)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &rtpSession{
		log: log, conn: c, rtcpC: rc, port: port, pool: pool, policy: policy, foreign: foreign,
		ctx: ctx, cancel: cancel,
		sendDTMF: -1, recvDTMF: defaultDTMFPT, dir: SendRecv, rtcpEvery: rtcpEvery,
		ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(),
	}
	s.pkts.New = func() any { return &rtp.Packet{Payload: make([]byte, 0, 320)} }
	s.sendBuf = make([]byte, 12+frameSamples)
	s.encBuf = make([]byte, 0, 12+frameSamples+16)
	s.jb, err = transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000, Frame: frameDuration})
	if err == nil {
		s.dtmf, err = transcode.NewDTMFSender(8000, frameDuration, 10)
	}
	if err == nil {
		s.ulawDec, err = transcode.NewULawDecoder(outFwd{s})
	}
	if err != nil {
		s.close()
		return nil, err
	}
	s.lastDec = s.ulawDec
	return s, nil
}

// start runs the read and RTCP loops and puts the session on the media
// clock. It is idempotent: early media starts it before the answer.
func (s *rtpSession) start() {
	s.begin.Do(func() {
		s.wg.Add(2)
		go s.readLoop()
		go s.rtcpLoop()
		s.leg = mediaclock.Shared().Register(s.tick)
	})
}

// tick is the session's share of a media clock tick: frames skipped
// during a stall first, then run frames sent and played out.
func (s *rtpSession) tick(run, skipped int) {
	if skipped > 0 {
		s.skip(skipped)
	}
	for range run {
		s.sendTick()
		s.playoutTick()
	}
}

// skip passes over n frames that fell due while the clock stalled and
// were not sent: the RTP timestamp advances over them, so that what
// follows stays in step with media time (the far end hears a gap, not
// squeezed time), and they are counted. The audio queued meanwhile stays
// (the queue bounds its delay), and so do the packets in the jitter
// buffer, which sheds a surplus itself.
func (s *rtpSession) skip(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ts += uint32(n * frameSamples)
	if s.dir.sends() && s.dst().IsValid() && s.codec.Name != "" {
		s.st.FramesSkippedSend += uint64(n)
	}
	s.ticks += n
}

// configure applies a negotiated description: codec, the far end's RTP
// and RTCP addresses, telephone-event type and our direction. Sequence
// number, timestamp and SSRC carry on unchanged (no gap after a
// re-INVITE). A new RTP address becomes the only source media is taken
// from and sent to, as at the start of the call: a source latched onto
// before (symmetric_rtp) is dropped, and nothing is learned from whoever
// sends first. An invalid rtcp defaults to the next port up from remote.
func (s *rtpSession) configure(c Codec, remote, rtcp netip.AddrPort, sendDTMF int, dir Direction) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !rtcp.IsValid() && remote.IsValid() && remote.Port() < 65535 {
		rtcp = netip.AddrPortFrom(remote.Addr(), remote.Port()+1)
	}
	if remote != s.sdpRemote {
		s.latched = remote
		s.cand = latchCandidate{}
		s.rtcpDst = rtcp
		s.jb.Reset() // a new source starts a new stream
	} else if rtcp != s.sdpRTCP {
		s.rtcpDst = rtcp
	}
	s.codec, s.sdpRemote, s.sdpRTCP, s.sendDTMF, s.dir = c, remote, rtcp, sendDTMF, dir
	s.st.Codec = c.Name
}

// setLog replaces the session's logger (the call's, once it has one).
func (s *rtpSession) setLog(l *slog.Logger) {
	s.mu.Lock()
	s.log = l
	s.mu.Unlock()
}

func (s *rtpSession) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

func (s *rtpSession) direction() Direction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir
}

func (s *rtpSession) stats() MediaStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if dst := s.dst(); dst.IsValid() {
		st.Remote = dst.String()
	}
	if s.rStarted {
		expected := uint64(s.rCycles) + uint64(s.rMaxSeq) - uint64(s.rBaseSeq) + 1
		if expected > st.PacketsReceived {
			st.PacketsLost = expected - st.PacketsReceived
		}
	}
	st.JitterMs = s.rJitter / 8
	st.SRTP = s.srtp != nil
	js := s.jb.Stats()
	st.PacketsLate = js.Late + js.Duplicates
	st.Concealed = js.Concealed
	st.FramesDroppedReceive = js.Dropped
	return st
}

// dst is where RTP goes: the SDP address, or the source latched onto.
// s.mu must be held.
func (s *rtpSession) dst() netip.AddrPort { return s.latched }

// swapOut replaces the writer decoded audio goes to and returns the old one.
func (s *rtpSession) swapOut(w transcode.PCMWriter) transcode.PCMWriter {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	old := s.out
	s.out = w
	return old
}

// push queues PCM for the send clock; past 400 ms the oldest is dropped
// and counted (FramesDroppedSend).
func (s *rtpSession) push(p transcode.PCM16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range p {
		if s.rLen == len(s.ring) {
			s.rHead = (s.rHead + 1) % len(s.ring)
			s.rLen--
			if s.dropped++; s.dropped == frameSamples {
				s.dropped = 0
				s.st.FramesDroppedSend++
			}
		}
		s.ring[(s.rHead+s.rLen)%len(s.ring)] = v
		s.rLen++
	}
}

// queueDTMF adds digits to send and returns a channel closed once sent.
func (s *rtpSession) queueDTMF(digits []byte) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sendDTMF < 0 {
		return nil, ErrNoTelephoneEvent
	}
	r := dtmfReq{digits: digits, done: make(chan struct{})}
	s.dtmfQ = append(s.dtmfQ, r)
	return r.done, nil
}

// sendTick sends one frame (or telephone-event packet), and every
// rtcpEvery frames a sender report.
func (s *rtpSession) sendTick() {
	s.ticks++
	if s.ticks%s.rtcpEvery == 0 {
		defer s.sendRTCP()
	}
	n, dst := s.buildPacket(s.sendBuf, s.frame[:])
	if n == 0 || !dst.IsValid() {
		return
	}
	out := s.sendBuf[:n]
	if sp := s.srtpCtx(); sp != nil {
		var err error
		if out, err = sp.tx.EncryptRTP(s.encBuf[:0], out, nil); err != nil {
			return
		}
	}
	if _, err := s.conn.WriteToUDPAddrPort(out, dst); err == nil {
		s.mu.Lock()
		s.st.PacketsSent++
		s.st.BytesSent += uint64(n - 12)
		s.mu.Unlock()
	}
}

// buildPacket takes one 20 ms frame from the queue (or a telephone-event
// packet while digits are pending) and writes the RTP packet into buf.
// It returns 0 when nothing is to be sent this tick.
func (s *rtpSession) buildPacket(buf []byte, frame []int16) (int, netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Take the frame off the queue in every case so audio stays in step.
	got := min(s.rLen, frameSamples)
	for i := 0; i < got; i++ {
		frame[i] = s.ring[(s.rHead+i)%len(s.ring)]
	}
	clear(frame[got:])
	s.rHead = (s.rHead + got) % len(s.ring)
	s.rLen -= got

	ts := s.ts
	s.ts += frameSamples
	dst := s.dst()
	send := s.dir.sends() && dst.IsValid() && s.codec.Name != ""

	h := rtp.Header{Version: 2, SSRC: s.ssrc}
	var payload []byte
	if s.dtmfGap > 0 {
		s.dtmfGap--
	}
	if !s.dtmf.Busy() && len(s.dtmfQ) > 0 && s.dtmfGap == 0 && s.sendDTMF >= 0 {
		req := &s.dtmfQ[0]
		_ = s.dtmf.Start(rune(req.digits[s.dtmfCur]), dtmfToneTicks*frameDuration, ts)
		s.dtmfCur++
	}
	if p, ok := s.dtmf.Next(); ok && s.sendDTMF >= 0 {
		ev := p.Payload()
		payload = buf[12:16]
		copy(payload, ev[:])
		h.PayloadType = uint8(s.sendDTMF)
		h.Marker = p.Marker
		h.Timestamp = p.Timestamp
		if !s.dtmf.Busy() {
			// RFC 4733 §2.5.1.4: the end packets are out; pause, then the next digit.
			s.dtmfGap = dtmfGapTicks
			if req := &s.dtmfQ[0]; s.dtmfCur >= len(req.digits) {
				close(req.done)
				s.dtmfQ = s.dtmfQ[1:]
				s.dtmfCur = 0
			}
		}
	} else {
		payload = buf[12 : 12+frameSamples]
		enc := g711.EncodeUlawFrame
		if s.codec.Name == "PCMA" {
			enc = g711.EncodeAlawFrame
		}
		for i, v := range frame {
			payload[i] = enc(v)
		}
		h.PayloadType = s.codec.PT
		h.Timestamp = ts
	}
	if !send {
		return 0, dst
	}
	h.SequenceNumber = s.seq
	s.seq++
	if _, err := h.MarshalTo(buf[:12]); err != nil {
		return 0, dst
	}
	return 12 + len(payload), dst
}

func (s *rtpSession) srtpCtx() *srtpPair {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srtp
}

func (s *rtpSession) setSRTP(p *srtpPair) {
	s.mu.Lock()
	s.srtp = p
	s.mu.Unlock()
}

func (s *rtpSession) readLoop() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	dec := make([]byte, 0, 1500)
	var pkt rtp.Packet
	var errs int
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if errs++; errs > 50 {
				s.logger().Warn("rtp read failing, stopping", "error", err)
				return
			}
			continue
		}
		errs = 0
		s.receiveDatagram(buf[:n], dec, &pkt, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), time.Now())
	}
}

// receiveDatagram handles one datagram from the RTP socket: SRTP
// decryption when keyed, RTP parsing, then receive. dec is scratch space
// for the decrypted packet and pkt is reused between calls; neither is
// kept. Whatever an outsider sends ends here, so it must never panic.
func (s *rtpSession) receiveDatagram(data, dec []byte, pkt *rtp.Packet, from netip.AddrPort, now time.Time) {
	if sp := s.srtpCtx(); sp != nil {
		var err error
		if data, err = sp.rx.DecryptRTP(dec[:0], data, nil); err != nil {
			s.mu.Lock()
			s.st.SRTPFailures++
			s.mu.Unlock()
			return
		}
	}
	if err := pkt.Unmarshal(data); err != nil || pkt.Version != 2 {
		return
	}
	s.receive(pkt, from, now)
}

// receive handles one RTP packet: source check, sequence and jitter
// accounting, then DTMF or decode into the output writer.
func (s *rtpSession) receive(pkt *rtp.Packet, from netip.AddrPort, now time.Time) {
	s.mu.Lock()
	var moved bool
	var prev netip.AddrPort
	if from != s.latched || !from.IsValid() {
		prev = s.latched
		latched, candidate := s.relatch(pkt, from)
		if !latched {
			s.dropForeign(from, now, candidate)
			return
		}
		moved = true
	}
	if !s.rStarted || pkt.SSRC != s.rSSRC {
		s.rStarted, s.rSSRC = true, pkt.SSRC
		s.rBaseSeq, s.rMaxSeq, s.rCycles = pkt.SequenceNumber, pkt.SequenceNumber-1, 0
		s.st.PacketsReceived, s.rJitter, s.rTransit = 0, 0, 0
	}
	delta := int16(pkt.SequenceNumber - s.rMaxSeq)
	switch {
	case delta > 0:
		if pkt.SequenceNumber < s.rMaxSeq {
			s.rCycles += 1 << 16
		}
		s.rMaxSeq = pkt.SequenceNumber
	case delta <= -100:
		// A large jump back is a restarted sender: start counting again.
		s.rBaseSeq, s.rMaxSeq, s.rCycles = pkt.SequenceNumber, pkt.SequenceNumber, 0
		s.st.PacketsReceived = 0
	default:
		// Reordered or duplicate: the jitter buffer sorts it out.
	}
	s.st.PacketsReceived++
	s.st.BytesReceived += uint64(len(pkt.Payload))
	arrival := now.UnixNano() / int64(time.Second/8000)
	transit := arrival - int64(pkt.Timestamp)
	if s.st.PacketsReceived > 1 {
		d := transit - s.rTransit
		if d < 0 {
			d = -d
		}
		if d < 8000*10 {
			s.rJitter += (float64(d) - s.rJitter) / 16
		}
	}
	s.rTransit = transit
	receives := s.dir.receives()
	recvDTMF := s.recvDTMF
	log, sdp := s.log, s.sdpRemote
	s.mu.Unlock()
	if moved {
		log.Info("rtp source latched", "source", from.String(), "previous", prev.String(), "sdp", sdp.String())
	}

	pt := int(pkt.PayloadType)
	switch {
	case pt == recvDTMF || (pt >= 96 && pt == s.sendDTMFPT()):
		ev, err := transcode.ParseDTMFEvent(pkt.Payload)
		if err != nil || !ev.End {
			return
		}
		s.mu.Lock()
		dup := s.rLastEvSet && s.rLastEvTS == pkt.Timestamp
		s.rLastEvTS, s.rLastEvSet = pkt.Timestamp, true
		s.mu.Unlock()
		if !dup && s.onDTMF != nil {
			if d, err := transcode.DTMFDigit(ev.Event); err == nil {
				s.onDTMF(d)
			}
		}
	case pt == 0 || pt == 8:
		if !receives {
			return
		}
		p := s.pkts.Get().(*rtp.Packet)
		p.Header = rtp.Header{Version: 2, Marker: pkt.Marker, PayloadType: pkt.PayloadType,
			SequenceNumber: pkt.SequenceNumber, Timestamp: pkt.Timestamp, SSRC: pkt.SSRC}
		p.Payload = append(p.Payload[:0], pkt.Payload...)
		s.jb.Push(p)
	default:
		// Comfort noise (RFC 3389, pt 13) and unknown types are ignored.
	}
}

// relatch decides, in symmetric mode, whether a packet from a source
// other than the latched one moves the session onto that source: its IP
// must be allowed (or be the SDP's IP), and it must have sent
// latchPackets consecutive in-sequence packets of one SSRC. It reports
// whether the session is now latched onto from, and whether from is a
// candidate that may still get there. s.mu must be held.
func (s *rtpSession) relatch(pkt *rtp.Packet, from netip.AddrPort) (latched, candidate bool) {
	if !s.policy.symmetric || !s.sdpRemote.IsValid() || !from.IsValid() {
		return false, false
	}
	ip := from.Addr()
	if ip != s.sdpRemote.Addr() && (s.policy.allowed == nil || !s.policy.allowed(ip)) {
		return false, false
	}
	c := &s.cand
	if c.n > 0 && c.from == from && c.ssrc == pkt.SSRC && pkt.SequenceNumber == c.seq+1 {
		c.n++
	} else {
		*c = latchCandidate{from: from, ssrc: pkt.SSRC, n: 1}
	}
	c.seq = pkt.SequenceNumber
	if c.n < latchPackets {
		return false, true
	}
	s.latched, s.cand = from, latchCandidate{}
	if from.Port() < 65535 {
		s.rtcpDst = netip.AddrPortFrom(ip, from.Port()+1)
	}
	s.jb.Reset() // a new source starts a new stream
	return true, false
}

// dropForeign counts an RTP packet dropped for its source and logs it,
// rate-limited. A symmetric session's candidate is counted but not
// logged: it is an allowed source on its way to being latched onto.
// s.mu must be held; dropForeign releases it.
func (s *rtpSession) dropForeign(from netip.AddrPort, now time.Time, candidate bool) {
	s.st.PacketsForeign++
	var logIt bool
	var n uint64
	if !candidate {
		logIt, n = s.rtpWarn.note(now)
	}
	log, expected := s.log, s.latched
	s.mu.Unlock()
	if s.foreign != nil {
		s.foreign.rtp.Add(1)
	}
	if logIt {
		log.Warn("rtp from a foreign source dropped", "protocol", "rtp", "source", from.String(),
			"expected", expected.String(), "dropped", n)
	}
}

// playoutTick plays one 20 ms frame from the jitter buffer: it decodes
// the packet due by its payload type, or conceals a lost one (G.711
// concealment from transcode).
func (s *rtpSession) playoutTick() {
	p, st := s.jb.Pop()
	switch st {
	case transcode.JitterReady:
		dec := s.ulawDec
		if p.PayloadType == 8 {
			// Made with the first PCMA packet: most calls are PCMU, and
			// a decoder keeps its concealment history (3 KB).
			if s.alawDec == nil {
				var err error
				if s.alawDec, err = transcode.NewALawDecoder(outFwd{s}); err != nil {
					s.pkts.Put(p)
					return
				}
			}
			dec = s.alawDec
		}
		s.lastDec = dec
		_ = dec.WriteSample(p.Payload)
		s.pkts.Put(p)
	case transcode.JitterLost:
		var next []byte
		if n := s.jb.Next(); n != nil {
			next = n.Payload
		}
		_ = transcode.Conceal(s.lastDec, next)
	}
}

func (s *rtpSession) sendDTMFPT() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendDTMF
}

func (s *rtpSession) rtcpLoop() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.rtcpC.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.receiveRTCP(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), time.Now())
	}
}

// receiveRTCP handles one RTCP datagram. It is taken only from the IP
// address of the far end's RTCP (RFC 3605 a=rtcp, or RTP's address), or
// with symmetric_rtp from the IP of the latched RTP source, whose port
// then becomes where our reports go; anything else is dropped and counted
// like foreign RTP.
func (s *rtpSession) receiveRTCP(data []byte, from netip.AddrPort, now time.Time) {
	s.mu.Lock()
	ip := from.Addr()
	fromLatched := s.policy.symmetric && s.latched.IsValid() && ip == s.latched.Addr()
	if !from.IsValid() || (ip != s.sdpRTCP.Addr() && !fromLatched) {
		s.st.RTCPForeign++
		logIt, n := s.rtcpWarn.note(now)
		log, expected := s.log, s.sdpRTCP
		s.mu.Unlock()
		if s.foreign != nil {
			s.foreign.rtcp.Add(1)
		}
		if logIt {
			log.Warn("rtcp from a foreign source dropped", "protocol", "rtcp", "source", from.String(),
				"expected", expected.String(), "dropped", n)
		}
		return
	}
	sp := s.srtp
	s.mu.Unlock()
	if sp != nil {
		var err error
		if data, err = sp.rx.DecryptRTCP(nil, data, nil); err != nil {
			return
		}
	}
	pkts, err := rtcp.Unmarshal(data)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.RTCPReceived++
	if fromLatched && s.latched != s.sdpRemote {
		s.rtcpDst = from // symmetric RTCP from behind the same NAT
	}
	for _, p := range pkts {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			s.rLastSR = uint32(sr.NTPTime >> 16)
		}
	}
}

// sendRTCP sends a sender report with one reception report block
// (RFC 3550 §6.4.1).
func (s *rtpSession) sendRTCP() {
	s.mu.Lock()
	dst := s.rtcpDst
	sr := &rtcp.SenderReport{
		SSRC: s.ssrc, NTPTime: ntpTime(time.Now()), RTPTime: s.ts,
		PacketCount: uint32(s.st.PacketsSent), OctetCount: uint32(s.st.BytesSent),
	}
	if s.rStarted {
		expected := uint64(s.rCycles) + uint64(s.rMaxSeq) - uint64(s.rBaseSeq) + 1
		var lost uint64
		if expected > s.st.PacketsReceived {
			lost = expected - s.st.PacketsReceived
		}
		sr.Reports = []rtcp.ReceptionReport{{
			SSRC: s.rSSRC, TotalLost: uint32(min(lost, 0xffffff)),
			LastSequenceNumber: s.rCycles + uint32(s.rMaxSeq),
			Jitter:             uint32(s.rJitter), LastSenderReport: s.rLastSR,
		}}
	}
	s.mu.Unlock()
	if !dst.IsValid() {
		return
	}
	b, err := sr.Marshal()
	if err != nil {
		return
	}
	if sp := s.srtpCtx(); sp != nil {
		if b, err = sp.tx.EncryptRTCP(nil, b, nil); err != nil {
			return
		}
	}
	if _, err := s.rtcpC.WriteToUDPAddrPort(b, dst); err == nil {
		s.mu.Lock()
		s.st.RTCPSent++
		s.mu.Unlock()
	}
}

func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	sec := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return sec<<32 | frac
}

// close stops the loops, closes the sockets and returns the ports to the
// pool. It is idempotent and waits for the loops.
func (s *rtpSession) close() error {
	s.once.Do(func() {
		s.begin.Do(func() {}) // never start after close
		s.cancel()
		if s.leg != nil {
			s.leg.Stop()
		}
		s.conn.Close()
		s.rtcpC.Close()
		s.wg.Wait()
		s.pool.release(s.port)
		s.mu.Lock()
		for _, r := range s.dtmfQ {
			close(r.done)
		}
		s.dtmfQ = nil
		s.mu.Unlock()
	})
	return nil
}
