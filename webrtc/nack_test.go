package webrtc

import (
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

// guardBench is a NACK guard in front of pion's real NACK responder, as
// the Engine chains them, with a clock the test moves and a network that
// counts what goes out.
type guardBench struct {
	t     *testing.T
	guard *nackGuard
	chain *interceptor.Chain
	clock time.Time

	mu      sync.Mutex
	sent    map[uint32]map[uint16]int // writes per SSRC and sequence number
	resends atomic.Int64
	rtcp    chan []byte
	reader  interceptor.RTCPReader
	writers map[uint32]interceptor.RTPWriter
}

func newGuardBench(t *testing.T, targetBPS int) *guardBench {
	t.Helper()
	b := &guardBench{t: t, clock: time.Unix(1000, 0), sent: map[uint32]map[uint16]int{}, rtcp: make(chan []byte, 256), writers: map[uint32]interceptor.RTPWriter{}}
	b.guard = newNACKGuard(func() int { return targetBPS }, nil)
	b.guard.now = func() time.Time {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.clock
	}
	rf, err := nack.NewResponderInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	responder, err := rf.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	b.chain = interceptor.NewChain([]interceptor.Interceptor{b.guard, responder})
	t.Cleanup(func() { b.chain.Close() })
	b.reader = b.chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		raw, ok := <-b.rtcp
		if !ok {
			return 0, nil, io.EOF
		}
		return copy(buf, raw), a, nil
	}))
	return b
}

// stream binds a local stream: video answers NACKs, audio does not.
func (b *guardBench) stream(ssrc uint32, video bool) {
	info := &interceptor.StreamInfo{SSRC: ssrc, MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000}
	if video {
		info.MimeType, info.ClockRate = pwebrtc.MimeTypeVP8, 90000
		info.RTCPFeedback = []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	}
	b.writers[ssrc] = b.chain.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.sent[h.SSRC] == nil {
			b.sent[h.SSRC] = map[uint16]int{}
		}
		b.sent[h.SSRC][h.SequenceNumber]++
		if b.sent[h.SSRC][h.SequenceNumber] > 1 {
			b.resends.Add(1)
		}
		return len(payload), nil
	}))
}

func (b *guardBench) advance(d time.Duration) {
	b.mu.Lock()
	b.clock = b.clock.Add(d)
	b.mu.Unlock()
}

// send writes n packets of size payload bytes on ssrc from sequence
// number first, one per step of the clock.
func (b *guardBench) send(ssrc uint32, first uint16, n, size int, step time.Duration) {
	for i := range n {
		seq := first + uint16(i)
		payload := make([]byte, size)
		binary.BigEndian.PutUint16(payload, seq)
		if _, err := b.writers[ssrc].Write(&rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, PayloadType: 96}, payload, nil); err != nil {
			b.t.Fatal(err)
		}
		b.advance(step)
	}
}

// nack has the browser ask for seqs of ssrc, and reads it through the
// chain as pion's RTCP read loop does. It returns what reached the
// responder (nil: nothing, the guard kept all of it).
func (b *guardBench) nack(ssrc uint32, seqs []uint16) []rtcp.Packet {
	b.t.Helper()
	raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 7, MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}})
	if err != nil {
		b.t.Fatal(err)
	}
	return b.read(raw)
}

// read passes raw through the chain, with an empty packet after it: if
// the guard keeps all of raw, the read returns the empty one.
func (b *guardBench) read(raw []byte) []rtcp.Packet {
	b.t.Helper()
	marker, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 99}})
	b.rtcp <- raw
	b.rtcp <- marker
	buf := make([]byte, 1500)
	n, _, err := b.reader.Read(buf, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	pkts, err := rtcp.Unmarshal(buf[:n])
	if err != nil {
		b.t.Fatal(err)
	}
	if rr, ok := pkts[0].(*rtcp.ReceiverReport); ok && rr.SSRC == 99 {
		return nil
	}
	if n, _, err := b.reader.Read(buf, nil); err != nil || n == 0 {
		b.t.Fatalf("the marker after the packet: %d bytes, %v", n, err)
	}
	return pkts
}

func seqRange(first uint16, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = first + uint16(i)
	}
	return s
}

// waitResends waits until the responder has resent want packets (it
// resends on goroutines of its own).
func (b *guardBench) waitResends(want int64) {
	b.t.Helper()
	eventually(b.t, "the responder's resends", func() bool { return b.resends.Load() >= want })
	if got := b.resends.Load(); got != want {
		b.t.Fatalf("%d packets resent, want %d", got, want)
	}
}

// TestNACKGuardBudget: a browser that NACKs every packet of the last
// second gets resent only resendShare of the bytes it was sent, each
// packet at most once per resendInterval; what is refused is counted by
// reason, and what the responder resends is exactly what the guard let
// through.
func TestNACKGuardBudget(t *testing.T) {
	b := newGuardBench(t, 10_000_000) // an estimate well above the media: the media rules
	b.stream(1, true)
	// One second of video: 1,000 packets of 1,000 bytes (plus a 12-byte header).
	const size = 1012
	b.send(1, 0, 1000, size-12, 900*time.Microsecond)
	media := int64(1000 * size)
	budget := int64(float64(media) * resendShare)
	want := budget / size

	if got := b.nack(1, seqRange(0, 1000)); got == nil {
		t.Fatal("the storm's NACK was dropped whole; want the budget's share passed on")
	}
	b.waitResends(want)
	s := b.guard.own.stats()
	if s.Requested != 1000 || int64(s.Resent) != want || int64(s.ResentBytes) != want*size {
		t.Errorf("stats %+v, want 1000 requested and %d resent", s, want)
	}
	if s.Refused[RefusedBudget] != uint64(1000-want) {
		t.Errorf("refused for the budget: %d, want %d", s.Refused[RefusedBudget], 1000-want)
	}
	if s.ResentBytes > uint64(budget) {
		t.Errorf("resent %d bytes, over the budget of %d", s.ResentBytes, budget)
	}

	// Asked again (just after the echo window): the packets just resent
	// are repeats, the rest still over budget. Nothing more goes out.
	b.advance(echoWindow)
	if got := b.nack(1, seqRange(0, 1000)); got != nil {
		t.Errorf("a repeat of the storm reached the responder: %v", got)
	}
	s = b.guard.own.stats()
	if s.Refused[RefusedRepeat] != uint64(want) {
		t.Errorf("refused as repeats: %d, want %d", s.Refused[RefusedRepeat], want)
	}

	// A second later, with no new media, the floor is all there is; and
	// packets sent over resendMaxAge ago are not resent at all.
	b.advance(resendWindow)
	if got := b.nack(1, seqRange(500, 10)); got != nil {
		t.Errorf("packets over %v old reached the responder: %v", resendMaxAge, got)
	}
	if s := b.guard.own.stats(); s.Refused[RefusedUnavailable] != 10 {
		t.Errorf("refused as unavailable: %d, want 10", s.Refused[RefusedUnavailable])
	}
	b.send(1, 1000, 100, 88, time.Millisecond) // 100 small packets: 10 kB, under the floor
	b.nack(1, seqRange(1000, 100))
	b.waitResends(want + 100)

	// Audio never negotiates NACK: nothing is cached, nothing resent.
	b.stream(2, false)
	b.send(2, 0, 50, 160, 20*time.Millisecond)
	if got := b.nack(2, seqRange(0, 50)); got != nil {
		t.Errorf("a NACK for audio reached the responder: %v", got)
	}
	if s := b.guard.own.stats(); s.Refused[RefusedNoStream] != 50 {
		t.Errorf("refused for no stream: %d, want 50", s.Refused[RefusedNoStream])
	}
	b.mu.Lock()
	for seq, n := range b.sent[2] {
		if n != 1 {
			t.Errorf("audio packet %d went out %d times", seq, n)
		}
	}
	b.mu.Unlock()
	b.waitResends(want + 100)
}

// TestNACKGuardRateAndEcho: per stream, at most nackBurst NACK messages
// at once and nackRate a second after that; the copy of a compound packet
// that pion hands to the reader of each stream it names is one NACK, not
// two; a compound packet keeps its other reports.
func TestNACKGuardRateAndEcho(t *testing.T) {
	b := newGuardBench(t, 10_000_000)
	b.stream(1, true)
	b.send(1, 0, 1000, 988, 900*time.Microsecond) // a budget of 150 packets

	// A compound packet: a receiver report, and a NACK for one packet.
	rr := &rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: 1, LastSequenceNumber: 199}}}
	raw, err := rtcp.Marshal([]rtcp.Packet{rr, &rtcp.TransportLayerNack{SenderSSRC: 7, MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 150}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := b.read(raw)
	if len(got) != 2 {
		t.Fatalf("the compound packet came out as %v, want the report and the NACK", got)
	}
	if r, ok := got[0].(*rtcp.ReceiverReport); !ok || r.SSRC != 7 {
		t.Errorf("first packet %v, want the receiver report", got[0])
	}
	b.waitResends(1)
	// Its echo, on the reader of another stream: the report stays, the NACK goes.
	got = b.read(raw)
	if len(got) != 1 {
		t.Fatalf("the echo came out as %v, want the report alone", got)
	}
	if s := b.guard.own.stats(); s.Requested != 1 || s.Resent != 1 {
		t.Errorf("after the echo: %+v, want one packet asked for and resent", s)
	}

	// NACKs without end, each for a packet not asked for yet: the bucket
	// lets nackBurst through (less the one above), then none until time passes.
	for i := range 100 {
		b.nack(1, []uint16{uint16(i)})
	}
	s := b.guard.own.stats()
	if passed := s.Resent - 1; passed != nackBurst-1 {
		t.Errorf("%d NACKs passed in a burst, want %d", passed, nackBurst-1)
	}
	if s.Refused[RefusedRate] != 100-(nackBurst-1) {
		t.Errorf("refused for rate: %d, want %d", s.Refused[RefusedRate], 100-(nackBurst-1))
	}
	b.advance(100 * time.Millisecond) // nackRate/10 more tokens
	for i := range 20 {
		b.nack(1, []uint16{uint16(100 + i)})
	}
	if s2 := b.guard.own.stats(); s2.Resent-s.Resent != nackRate/10 {
		t.Errorf("%d NACKs passed 100 ms later, want %d", s2.Resent-s.Resent, nackRate/10)
	}
	b.waitResends(int64(b.guard.own.stats().Resent))
}

// TestNACKStormAgainstForwardedVideo: a console that NACKs every packet
// of the video forwarded to it, over and over, gets back at most
// resendShare of the video's bytes (plus the floor per window), where
// pion's responder alone resent everything, as often as asked; and NACKs
// for the audio the gateway sends it are not answered.
func TestNACKStormAgainstForwardedVideo(t *testing.T) {
	e := newTestEngine(t, Config{})
	customer := newBrowser(t, browserOptions{})
	camera := customer.addCamera(t, func(rtcp.Packet) {})
	pc := connect(t, e, customer, PeerOptions{Name: "customer"})
	// 20 ms frames of four 1,000-byte packets: 1.6 Mbit/s.
	var seq uint16
	defer customer.film(func() {
		for i := range 4 {
			payload := make([]byte, 1000)
			payload[0] = 0x10
			binary.BigEndian.PutUint16(payload[2:], seq)
			if err := camera.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq/4) * 1800, Marker: i == 3}, Payload: payload}); err != nil {
				t.Errorf("camera: %v", err)
			}
			seq++
		}
	})()
	var video *RemoteVideo
	select {
	case video = <-pc.videos:
	case <-timeoutC():
		t.Fatal("no OnVideoTrack for the camera")
	}

	// The abusive console keeps no replay window, so every resend reaches
	// its track reader and is counted.
	console := newBrowser(t, browserOptions{settings: func(se *pwebrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) }})
	pa := connect(t, e, console, PeerOptions{Name: "agent"})
	fwd, err := NewForwarder(video, pa.Peer)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	serverOffer(t, pa.Peer, console)
	eventually(t, "video at the console", func() bool {
		console.mu.Lock()
		defer console.mu.Unlock()
		return len(console.video) >= 200
	})
	console.mu.Lock()
	var videoSSRC, audioSSRC uint32
	for _, tr := range console.tracks {
		if tr.Kind() == pwebrtc.RTPCodecTypeVideo {
			videoSSRC = uint32(tr.SSRC())
		} else {
			audioSSRC = uint32(tr.SSRC())
		}
	}
	console.mu.Unlock()
	if audioSSRC == 0 {
		// The gateway's audio track exists from the first answer; its SSRC
		// is in the gateway's sender.
		audioSSRC = uint32(pa.sender.GetParameters().Encodings[0].SSRC)
	}

	received := func() (packets, dups int) {
		console.mu.Lock()
		defer console.mu.Unlock()
		seen := map[uint16]bool{}
		for _, s := range console.videoSeq {
			if seen[s] {
				dups++
			}
			seen[s] = true
		}
		return len(console.videoSeq), dups
	}
	before, dupsBefore := received()
	start := time.Now()

	// The storm: 2 s of NACKs every 5 ms, each naming the last 1,024
	// packets received (64 pairs), for video and for audio.
	deadline := time.Now().Add(2 * time.Second)
	nacks := 0
	for time.Now().Before(deadline) {
		console.mu.Lock()
		last := console.videoSeq[len(console.videoSeq)-1]
		console.mu.Unlock()
		lost := seqRange(last-1023, 1024)
		if err := console.pc.WriteRTCP([]rtcp.Packet{
			&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: videoSSRC, Nacks: rtcp.NackPairsFromSequenceNumbers(lost)},
			&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: audioSSRC, Nacks: rtcp.NackPairsFromSequenceNumbers(lost[:64])},
		}); err != nil {
			t.Fatal(err)
		}
		nacks++
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // resends in flight land
	after, dupsAfter := received()
	elapsed := time.Since(start)
	media := after - before - (dupsAfter - dupsBefore)
	resent := dupsAfter - dupsBefore
	windows := int(elapsed/resendWindow) + 1
	// The share of what was sent in the storm and in the window before
	// it; packets of over 1,000 bytes, so the floor is worth at most
	// floor/1000 packets a window.
	limit := int(float64(media)*resendShare*float64(elapsed+resendWindow)/float64(elapsed)) + windows*resendFloor/1000
	t.Logf("%d NACKs in %v: %d video packets, %d resent (limit %d); gateway stats %+v",
		nacks, elapsed.Round(time.Millisecond), media, resent, limit, pa.NACKStats())
	if resent > limit {
		t.Errorf("%d packets resent for %d sent, over the budget of %d", resent, media, limit)
	}
	if resent == 0 {
		t.Error("nothing resent at all: the budget should still answer some NACKs")
	}
	s := pa.NACKStats()
	if s.Refused[RefusedNoStream] == 0 {
		t.Errorf("NACKs for audio were not refused: %+v", s)
	}
	if s.Refused[RefusedBudget]+s.Refused[RefusedRate]+s.Refused[RefusedRepeat] == 0 {
		t.Errorf("the storm was not refused: %+v", s)
	}
	if all := e.NACKStats(); all.Resent < s.Resent || all.Requested < s.Requested {
		t.Errorf("engine stats %+v below the peer's %+v", all, s)
	}
}
