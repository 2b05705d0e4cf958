package sip

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// sendMangledRTP sends a PCMU tone with every pair of packets swapped and
// every 25th packet dropped.
func sendMangledRTP(p *fakePeer, to netip.AddrPort, freq float64, stop <-chan struct{}) {
	var ph float64
	mk := func(seq uint16, ts uint32) []byte {
		b := make([]byte, 172)
		b[0] = 0x80
		b[2], b[3] = byte(seq>>8), byte(seq)
		b[4], b[5], b[6], b[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		b[8], b[9], b[10], b[11] = 9, 9, 9, 9
		for i, v := range tone(freq, 0.5, 160, &ph) {
			b[12+i] = ulaw(v)
		}
		return b
	}
	tk := time.NewTicker(40 * time.Millisecond)
	defer tk.Stop()
	for seq := uint16(1); ; seq += 2 {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		a, b := mk(seq, uint32(seq)*160), mk(seq+1, uint32(seq+1)*160)
		for _, pkt := range [][]byte{b, a} {
			s := uint16(pkt[2])<<8 | uint16(pkt[3])
			if s%25 == 0 {
				continue
			}
			if _, err := p.rtp.WriteToUDPAddrPort(pkt, to); err != nil {
				return
			}
		}
	}
}

func TestJitterBufferReordersAndConceals(t *testing.T) {
	heard := newRecorder()
	p, dialogs := answeringPeer(t, SendRecv, nil)
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{AudioOut: heard})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	<-dialogs
	stop := make(chan struct{})
	defer close(stop)
	go sendMangledRTP(p, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(call.LocalRTPPort())), 800, stop)
	waitFor(t, "two seconds of audio", func() bool { return len(heard.Samples()) >= 16000 })
	st := call.Stats()
	if st.PacketsLost == 0 || st.Concealed == 0 {
		t.Errorf("no loss seen or concealed: %+v", st)
	}
	got := heard.Samples()[4000:]
	if f := peakFreq(got); f < 790 || f > 810 {
		t.Errorf("peak %v Hz, want 800", f)
	}
	// Reordered packets were put back in order: the tone stays clean.
	if p := purity(got, 800); p < -1 {
		t.Errorf("tone purity %.1f dB after reordering and loss, want above -1 dB", p)
	}
}
