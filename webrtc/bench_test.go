package webrtc

import (
	"encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// discardRTP is a TrackLocalWriter that drops what it is given.
type discardRTP struct{}

func (discardRTP) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	return h.MarshalSize() + len(payload), nil
}
func (discardRTP) Write(b []byte) (int, error) { return len(b), nil }

// discardPCM is a PCM writer that drops what it is given.
type discardPCM struct{}

func (discardPCM) WriteSample(transcode.PCM16) error { return nil }
func (discardPCM) SampleRate() int                   { return 8000 }
func (discardPCM) String() string                    { return "discard" }
func (discardPCM) Close() error                      { return nil }

var benchCodecs = []struct {
	name   string
	params pwebrtc.RTPCodecParameters
}{
	{"opus", pwebrtc.RTPCodecParameters{RTPCodecCapability: opusCap, PayloadType: 111}},
	{"PCMU", pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}},
}

// benchPeer is a Peer with only what the media path needs, and a clock
// that advances 20 ms per frame.
func benchPeer(b testing.TB) (*Peer, *time.Time) {
	b.Helper()
	now := time.Unix(0, 0)
	e, err := New(Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	e.opts.now = func() time.Time { return now }
	p := &Peer{e: e, log: e.log, in: newAudioIn(), out: newDiscardSwitch()}
	return p, &now
}

// BenchmarkReceive measures one 20 ms frame of the browser's audio through
// the receive path: jitter buffer push and pop, decode to 8 kHz PCM.
func BenchmarkReceive(b *testing.B) {
	for _, c := range benchCodecs {
		b.Run(c.name, func(b *testing.B) {
			p, now := benchPeer(b)
			rx, err := p.newRx(c.params)
			if err != nil {
				b.Fatal(err)
			}
			p.rx.Store(rx)
			// A second of browser audio: a 48 kHz tone for Opus.
			var payloads [][]byte
			step := uint32(160)
			if c.name == "opus" {
				rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
				enc, err := transcode.NewOpusEncoder(rec, 48000, transcode.OpusConfig{Bitrate: 32000, FEC: true, PacketLoss: 5})
				if err != nil {
					b.Fatal(err)
				}
				tone := audiotest.Tone(48000, 1000, 0.5, time.Second)
				for i := 0; i < len(tone); i += 960 {
					if err := enc.WriteSample(tone[i : i+960]); err != nil {
						b.Fatal(err)
					}
				}
				payloads = rec.Payloads()
				step = 960
			} else {
				rec := audiotest.NewPayloadRecorder(8000)
				enc, err := transcode.NewULawEncoder(rec)
				if err != nil {
					b.Fatal(err)
				}
				tone := audiotest.Tone(8000, 1000, 0.5, time.Second)
				for i := 0; i < len(tone); i += 160 {
					if err := enc.WriteSample(tone[i : i+160]); err != nil {
						b.Fatal(err)
					}
				}
				payloads = rec.Payloads()
			}
			b.ReportAllocs()
			b.ResetTimer()
			// The reader parses each packet into one rtp.Packet and the
			// jitter buffer keeps a copy (rxState.hold).
			var pkt rtp.Packet
			for i := range b.N {
				pkt = rtp.Packet{
					Header:  rtp.Header{Version: 2, PayloadType: uint8(c.params.PayloadType), SequenceNumber: uint16(i), Timestamp: uint32(i) * step, SSRC: 1},
					Payload: payloads[i%len(payloads)],
				}
				rx.jitter.Push(rx.hold(&pkt))
				p.recvTick()
				*now = now.Add(frameDur)
			}
			b.StopTimer()
			if st := rx.jitter.Stats(); b.N > 100 && st.Played < uint64(b.N)/2 {
				b.Fatalf("only %d of %d packets played: %+v", st.Played, b.N, st)
			}
		})
	}
}

// BenchmarkSend measures one 20 ms frame of 8 kHz PCM through the send
// path: queue, encode, RTP packet.
func BenchmarkSend(b *testing.B) {
	for _, c := range benchCodecs {
		b.Run(c.name, func(b *testing.B) {
			p, _ := benchPeer(b)
			tx, err := p.newTx(c.params, 1, discardRTP{})
			if err != nil {
				b.Fatal(err)
			}
			p.tx.Store(tx)
			tone := audiotest.Tone(8000, 440, 0.5, time.Second)
			buf := make(transcode.PCM16, frameSamples)
			silence := make(transcode.PCM16, frameSamples)
			// Two frames of slack, as when the sender runs.
			_ = p.in.WriteSample(tone[:2*frameSamples])
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				off := (i * frameSamples) % len(tone)
				_ = p.in.WriteSample(tone[off : off+frameSamples])
				p.sendTick(buf, silence)
			}
			b.StopTimer()
			if n := p.txStats.packets.Load(); n != uint64(b.N) {
				b.Fatalf("%d packets sent for %d frames", n, b.N)
			}
		})
	}
}

// BenchmarkRelay measures one 20 ms packet of a browser's Opus relayed
// to another peer (RelayAudioTo): parse, receive statistics, the mapping
// onto the destination's stream, the header handed to the destination
// track's writer with the payload untouched; then the destination's media
// tick, which sends nothing of its own while the relay carries the
// stream. The packets come as the network delivers them, in a buffer that
// the read loop reuses.
func BenchmarkRelay(b *testing.B) {
	src, _ := benchPeer(b)
	dst, _ := benchPeer(b)
	opus := benchCodecs[0].params
	tx, err := dst.newTx(opus, 2, discardRTP{})
	if err != nil {
		b.Fatal(err)
	}
	dst.tx.Store(tx)
	src.relayTo.Store(dst)
	r := &audioReader{p: src, params: func() []pwebrtc.RTPCodecParameters { return []pwebrtc.RTPCodecParameters{opus} }}
	r.refresh()

	// A second of browser Opus from a 48 kHz tone, as RTP packets.
	rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
	enc, err := transcode.NewOpusEncoder(rec, 48000, transcode.OpusConfig{Bitrate: 32000, FEC: true, PacketLoss: 5})
	if err != nil {
		b.Fatal(err)
	}
	tone := audiotest.Tone(48000, 6000, 0.5, time.Second)
	for i := 0; i < len(tone); i += 960 {
		if err := enc.WriteSample(tone[i : i+960]); err != nil {
			b.Fatal(err)
		}
	}
	var packets [][]byte
	for _, pl := range rec.Payloads() {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: uint8(opus.PayloadType), SSRC: 1}, Payload: pl}
		raw, err := pkt.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		packets = append(packets, raw)
	}
	buf := make([]byte, 1500)
	pcm := make(transcode.PCM16, frameSamples)
	silence := make(transcode.PCM16, frameSamples)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		raw := packets[i%len(packets)]
		n := copy(buf, raw)
		binary.BigEndian.PutUint16(buf[2:], uint16(i))
		binary.BigEndian.PutUint32(buf[4:], uint32(i)*960)
		r.packet(buf[:n])
		dst.sendTick(pcm, silence)
	}
	b.StopTimer()
	if n := dst.txStats.relayed.Load(); n != uint64(b.N) {
		b.Fatalf("%d packets relayed for %d sent", n, b.N)
	}
}

func newDiscardSwitch() *transcode.PCMSwitch {
	s := transcode.NewSwitch[transcode.PCM16](8000, "discard")
	s.Swap(discardPCM{})
	return s
}
