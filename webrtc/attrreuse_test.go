package webrtc

import (
	"log/slog"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

// packetSource is a remote stream in memory: each read returns the next
// packet of seqs, with the attributes attrs (nil as from SRTP).
type packetSource struct {
	seqs  []uint16
	attrs interceptor.Attributes
}

func (s *packetSource) Read(b []byte, _ interceptor.Attributes) (int, interceptor.Attributes, error) {
	h := rtp.Header{Version: 2, PayloadType: 111, SSRC: 0x1234, SequenceNumber: s.seqs[0], Timestamp: uint32(s.seqs[0]) * 960}
	s.seqs = s.seqs[1:]
	n, err := h.MarshalTo(b)
	if err != nil {
		return 0, nil, err
	}
	return n + copy(b[n:], []byte{0xf8, 0xff, 0xfe}), s.attrs, nil
}

func TestReusedAttributesFreshHeaderEachPacket(t *testing.T) {
	ic, err := (reusedAttributesFactory{}).NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	src := &packetSource{seqs: []uint16{10, 11, 13, 12}}
	r := ic.BindRemoteStream(&interceptor.StreamInfo{SSRC: 0x1234}, interceptor.RTPReaderFunc(src.Read))
	buf := make([]byte, 1500)
	var first interceptor.Attributes
	for _, want := range []uint16{10, 11, 13, 12} {
		n, a, err := r.Read(buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a == nil {
			t.Fatalf("seq %d: no attributes", want)
		}
		if len(a) != 0 {
			t.Fatalf("seq %d: attributes kept %d values of the previous packet", want, len(a))
		}
		h, err := a.GetRTPHeader(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if h.SequenceNumber != want {
			t.Fatalf("header says seq %d, packet is %d", h.SequenceNumber, want)
		}
		a.Set("mark", want) // what an interceptor above might leave
		if first == nil {
			first = a
		} else {
			first["probe"] = true
			if _, ok := a["probe"]; !ok {
				t.Fatal("a new map for a later packet: nothing is reused")
			}
			delete(first, "probe")
		}
	}
}

func TestReusedAttributesKeepsTheReadersOwn(t *testing.T) {
	ic, err := (reusedAttributesFactory{}).NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	own := interceptor.Attributes{"rtx": uint8(97)}
	src := &packetSource{seqs: []uint16{1}, attrs: own}
	r := ic.BindRemoteStream(&interceptor.StreamInfo{SSRC: 0x1234}, interceptor.RTPReaderFunc(src.Read))
	_, a, err := r.Read(make([]byte, 1500), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a["rtx"] != uint8(97) || len(a) != 1 {
		t.Fatalf("attributes %v, want the reader's own %v", a, own)
	}
}

// TestReceiverReportsThroughReusedAttributes runs pion's receiver-report
// interceptor above reusedAttributes: the report it writes counts the
// packets of each read, the highest and the lost one, so the header it
// parsed was each packet's own.
func TestReceiverReportsThroughReusedAttributes(t *testing.T) {
	rf, err := report.NewReceiverInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	rr, err := rf.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	ra, err := (reusedAttributesFactory{}).NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	chain := interceptor.NewChain([]interceptor.Interceptor{ra, rr})
	reports := make(chan *rtcp.ReceiverReport, 16)
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if r, ok := p.(*rtcp.ReceiverReport); ok {
				reports <- r
			}
		}
		return 0, nil
	}))
	defer chain.Close()
	seqs := []uint16{100, 101, 102, 104, 105} // 103 lost
	src := &packetSource{seqs: append([]uint16(nil), seqs...)}
	r := chain.BindRemoteStream(&interceptor.StreamInfo{SSRC: 0x1234, ClockRate: 48000, MimeType: pwebrtc.MimeTypeOpus}, interceptor.RTPReaderFunc(src.Read))
	buf := make([]byte, 1500)
	for range seqs {
		if _, _, err := r.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The interceptor reports every second.
	rep := <-reports
	if len(rep.Reports) != 1 {
		t.Fatalf("report blocks %v", rep.Reports)
	}
	b := rep.Reports[0]
	if b.SSRC != 0x1234 || b.LastSequenceNumber != 105 || b.TotalLost != 1 {
		t.Fatalf("report block: ssrc %#x, highest seq %d, lost %d; want 0x1234, 105, 1", b.SSRC, b.LastSequenceNumber, b.TotalLost)
	}
}

// TestReusedAttributesAllocatesLess reads audio packets through the
// engine's whole interceptor chain and through pion's receiver-report
// interceptor alone, which made a map for every packet.
func TestReusedAttributesAllocatesLess(t *testing.T) {
	perPacket := func(ic interceptor.Interceptor) float64 {
		defer ic.Close()
		ic.BindRTCPWriter(interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }))
		var seq uint16
		src := interceptor.RTPReaderFunc(func(b []byte, _ interceptor.Attributes) (int, interceptor.Attributes, error) {
			seq++
			h := rtp.Header{Version: 2, PayloadType: 111, SSRC: 0x1234, SequenceNumber: seq}
			n, err := h.MarshalTo(b)
			return n, nil, err
		})
		r := ic.BindRemoteStream(&interceptor.StreamInfo{SSRC: 0x1234, PayloadType: 111, ClockRate: 48000, MimeType: pwebrtc.MimeTypeOpus}, src)
		buf := make([]byte, 1500)
		return testing.AllocsPerRun(200, func() {
			if _, _, err := r.Read(buf, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	reg := &interceptor.Registry{}
	if err := registerInterceptors(&pwebrtc.MediaEngine{}, reg, &bweFactory{}, pionLoggerFactory{log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	engine, err := reg.Build("")
	if err != nil {
		t.Fatal(err)
	}
	rf, err := report.NewReceiverInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	alone, err := rf.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	with, without := perPacket(engine), perPacket(alone)
	if with >= without {
		t.Fatalf("%.1f allocations per packet through the engine's chain, %.1f through the report interceptor alone", with, without)
	}
}
