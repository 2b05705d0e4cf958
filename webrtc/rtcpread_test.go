package webrtc

import (
	"encoding/binary"
	"io"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// garbageRTCP is a packet a hostile or broken browser may send inside a
// valid SRTCP envelope: a sender report whose length field claims more
// words than the packet has.
type garbageRTCP struct{ ssrc uint32 }

func (g garbageRTCP) Marshal() ([]byte, error) {
	b := []byte{0x80, byte(rtcp.TypeSenderReport), 0x00, 0x10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], g.ssrc)
	return b, nil
}
func (g garbageRTCP) Unmarshal([]byte) error    { return nil }
func (g garbageRTCP) DestinationSSRC() []uint32 { return nil }
func (g garbageRTCP) MarshalSize() int          { return 8 }

// TestMalformedRTCPFromBrowser: RTCP that SRTCP authenticates but that
// does not parse (pion's SRTCP session drops it; readRTCP would skip it)
// leaves the peer up, and the browser's next receiver report still
// reaches the call's statistics.
func TestMalformedRTCPFromBrowser(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	defer playTone(t, p.AudioIn(), 440)()
	eventually(t, "audio at the browser", func() bool { return len(b.receivedAudio()) >= 10 })
	ssrc := b.receivedAudio()[0].ssrc

	for range 3 {
		if err := b.pc.WriteRTCP([]rtcp.Packet{garbageRTCP{ssrc: 1}}); err != nil {
			t.Fatalf("browser WriteRTCP: %v", err)
		}
	}
	rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: ssrc, FractionLost: 64, TotalLost: 12345}}}
	if err := b.pc.WriteRTCP([]rtcp.Packet{rr}); err != nil {
		t.Fatalf("browser WriteRTCP: %v", err)
	}
	eventually(t, "the receiver report after the malformed ones", func() bool {
		return p.Stats().Outbound.Lost == 12345
	})
	if st := p.State(); st != StateConnected {
		t.Errorf("peer state %v after malformed RTCP, want connected", st)
	}
}

// TestReadRTCPEndsWithTheStream: the reader returns once the stream has
// ended, and skips what does not parse before that.
func TestReadRTCPEndsWithTheStream(t *testing.T) {
	rr, err := (&rtcp.ReceiverReport{SSRC: 7}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := garbageRTCP{ssrc: 7}.Marshal()
	src := &scriptedRTCP{reads: [][]byte{bad, bad, rr}}
	pkts, err := readRTCP(src, make([]byte, rtcpReadSize))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || pkts[0].(*rtcp.ReceiverReport).SSRC != 7 {
		t.Fatalf("packets %v, want the receiver report", pkts)
	}
	if _, err := readRTCP(src, make([]byte, rtcpReadSize)); !rtcpEnded(err) {
		t.Fatalf("after the stream: %v, want its end", err)
	}
}

// scriptedRTCP returns its reads in turn, then io.EOF.
type scriptedRTCP struct{ reads [][]byte }

func (s *scriptedRTCP) Read(b []byte) (int, interceptor.Attributes, error) {
	if len(s.reads) == 0 {
		return 0, nil, io.EOF
	}
	n := copy(b, s.reads[0])
	s.reads = s.reads[1:]
	return n, nil, nil
}
