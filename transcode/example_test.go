package transcode_test

import (
	"fmt"
	"time"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// The receive path of a leg: packets go into the jitter buffer as they
// arrive, and a 20 ms tick pops them into the decoder chain. Packet 3 is
// lost; the decoder conceals it.
func ExampleJitter() {
	pcm := audiotest.NewRecorder(8000)
	dec, err := transcode.NewULawDecoder(pcm)
	if err != nil {
		panic(err)
	}
	jb, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000})
	if err != nil {
		panic(err)
	}
	for _, seq := range []uint16{1, 2, 4, 5} {
		jb.Push(&rtp.Packet{
			Header:  rtp.Header{SSRC: 1, SequenceNumber: seq, Timestamp: uint32(seq) * 160},
			Payload: make([]byte, 160),
		})
	}
	for range 5 { // in a leg: on every tick of a 20 ms time.Ticker
		st, err := jb.PopTo(dec)
		if err != nil {
			panic(err)
		}
		fmt.Println(st)
	}
	s := jb.Stats()
	fmt.Println("played", s.Played, "lost", s.Lost, "samples", len(pcm.Samples()))
	// Output:
	// ready
	// ready
	// lost
	// ready
	// ready
	// played 4 lost 1 samples 800
}

// A chain from browser Opus to PCMU, and how it prints.
func ExampleNewOpusDecoder() {
	ulaw := audiotest.NewPayloadRecorder(8000)
	enc, err := transcode.NewULawEncoder(ulaw)
	if err != nil {
		panic(err)
	}
	dec, err := transcode.NewOpusDecoderCodec(enc, transcode.GoOpus())
	if err != nil {
		panic(err)
	}
	fmt.Println(dec)
	// Output: Opus(decode gopus 8000Hz) -> PCMU(encode) -> PayloadRecorder(8000)
}

// Sending the digit 5 for 60 ms as RFC 4733 telephone-events at 8 kHz.
func ExampleDTMFSender() {
	s, err := transcode.NewDTMFSender(8000, 20*time.Millisecond, 10)
	if err != nil {
		panic(err)
	}
	if err := s.Start('5', 60*time.Millisecond, 1000); err != nil {
		panic(err)
	}
	for {
		p, ok := s.Next() // in a leg: once per 20 ms, each with the next sequence number
		if !ok {
			break
		}
		fmt.Printf("marker=%v ts=%d payload=% x\n", p.Marker, p.Timestamp, p.Payload())
	}
	// Output:
	// marker=true ts=1000 payload=05 0a 00 a0
	// marker=false ts=1000 payload=05 0a 01 40
	// marker=false ts=1000 payload=05 0a 01 e0
	// marker=false ts=1000 payload=05 8a 01 e0
	// marker=false ts=1000 payload=05 8a 01 e0
	// marker=false ts=1000 payload=05 8a 01 e0
}

// Re-pointing a leg's audio on escalation; the caller closes the old
// destination.
func ExampleSwitch() {
	out := transcode.NewSwitch[transcode.PCM16](8000, "web-out")
	queue := audiotest.NewRecorder(8000)
	desk := audiotest.NewRecorder(8000)
	out.Swap(queue)
	if old := out.Swap(desk); old != nil {
		_ = old.Close()
	}
	fmt.Println(out, queue.Closed())
	// Output: Switch(web-out) -> Recorder(8000) true
}
