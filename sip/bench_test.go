package sip

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
)

type discard struct{}

func (discard) WriteSample(transcode.PCM16) error { return nil }
func (discard) SampleRate() int                   { return 8000 }
func (discard) String() string                    { return "discard" }
func (discard) Close() error                      { return nil }

// benchRemote is the far end's address in the benchmarks' SDP.
var benchRemote = netip.MustParseAddrPort("127.0.0.1:4000")

func benchSession(b *testing.B) *rtpSession {
	b.Helper()
	r := rtpRange()
	s, err := newRTPSession(testLoggerB(), newPortPool(r[0], r[1], 0), netip.MustParseAddr("127.0.0.1"), sourcePolicy{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.close() })
	s.configure(staticCodecs["PCMU"], benchRemote, netip.AddrPort{}, 101, SendRecv)
	s.swapOut(discard{})
	return s
}

// BenchmarkRTPToPCM is the receive path for one 20 ms PCMU packet: RTP
// parse, strict-source and sequence checks, jitter estimate, jitter
// buffer push and playout, G.711 decode into the output writer.
func BenchmarkRTPToPCM(b *testing.B) {
	s := benchSession(b)
	from := benchRemote
	h := rtp.Header{Version: 2, PayloadType: 0, SSRC: 1}
	buf := make([]byte, 12+frameSamples)
	var pkt rtp.Packet
	now := time.Now()
	clock := now
	s.jb, _ = transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000, Now: func() time.Time { return clock }})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.SequenceNumber = uint16(i)
		h.Timestamp = uint32(i * frameSamples)
		_, _ = h.MarshalTo(buf)
		if err := pkt.Unmarshal(buf); err != nil {
			b.Fatal(err)
		}
		clock = now.Add(time.Duration(i) * frameDuration)
		s.receive(&pkt, from, clock)
		s.playoutTick()
	}
	if st := s.jb.Stats(); st.Played < uint64(b.N)/2 {
		b.Fatalf("played %d of %d", st.Played, b.N)
	}
}

// BenchmarkPCMToRTP is the send path for one 20 ms frame: queue the PCM
// (AudioIn), take a frame off on the clock tick, G.711 encode and build
// the RTP packet (the socket write is left out).
func BenchmarkPCMToRTP(b *testing.B) {
	s := benchSession(b)
	in := audioIn{s}
	pcm := make(transcode.PCM16, frameSamples)
	for i := range pcm {
		pcm[i] = int16(i * 100)
	}
	buf := make([]byte, 12+frameSamples)
	frame := make([]int16, frameSamples)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = in.WriteSample(pcm)
		if n, _ := s.buildPacket(buf, frame); n != 12+frameSamples {
			b.Fatalf("packet of %d bytes", n)
		}
	}
}
