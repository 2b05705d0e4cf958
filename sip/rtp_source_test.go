package sip

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Addresses of the source tests: the far end's SDP address, its host from
// another port (a NAT rewriting the port), a second SDP address (after a
// re-INVITE), a PBX address the trunk allows, and an outsider.
var (
	srcSDP      = netip.MustParseAddrPort("192.0.2.10:4000")
	srcSDPPort  = netip.MustParseAddrPort("192.0.2.10:4002")
	srcSDP2     = netip.MustParseAddrPort("192.0.2.11:6000")
	srcAllowed  = netip.MustParseAddrPort("198.51.100.7:30000")
	srcAllowed2 = netip.MustParseAddrPort("198.51.100.8:30000")
	srcOutsider = netip.MustParseAddrPort("203.0.113.66:5000")
)

// srcStep is one thing that happens to a session: a (re-)offer that sets
// the far end's address, or n RTP packets from one source, in sequence
// from seq.
type srcStep struct {
	offer netip.AddrPort
	from  netip.AddrPort
	ssrc  uint32
	seq   uint16
	n     int
}

func offer(a netip.AddrPort) srcStep { return srcStep{offer: a} }

func packets(from netip.AddrPort, ssrc uint32, seq uint16, n int) srcStep {
	return srcStep{from: from, ssrc: ssrc, seq: seq, n: n}
}

// interleave returns steps that send one packet at a time from each run
// in turn, each run keeping its own sequence.
func interleave(runs ...srcStep) []srcStep {
	var out []srcStep
	for i := 0; ; i++ {
		more := false
		for _, r := range runs {
			if i < r.n {
				out = append(out, packets(r.from, r.ssrc, r.seq+uint16(i), 1))
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// logRecords keeps the records a session logs.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// records returns the records with message msg, their attributes as strings.
func (l *logRecords) records(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r.Message != msg {
			continue
		}
		m := map[string]string{"level": r.Level.String()}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
		out = append(out, m)
	}
	return out
}

// sourceSession is an RTP session that is not started: tests feed it
// packets with receive and receiveRTCP and read its state. The trunk
// allows 198.51.100.0/24.
func sourceSession(t *testing.T, symmetric bool) (*rtpSession, *logRecords, *foreignCounter) {
	t.Helper()
	allow := netip.MustParsePrefix("198.51.100.0/24")
	policy := sourcePolicy{symmetric: symmetric, allowed: allow.Contains}
	r := rtpRange()
	logs := &logRecords{}
	fc := &foreignCounter{}
	s, err := newRTPSession(slog.New(logs), newPortPool(r[0], r[1], 0), netip.MustParseAddr("127.0.0.1"), policy, fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	s.swapOut(discard{})
	return s, logs, fc
}

// play applies steps to s, a packet every 20 ms of the session's clock
// from start, and returns the clock after the last packet.
func play(s *rtpSession, steps []srcStep, start time.Time) time.Time {
	now := start
	payload := make([]byte, frameSamples)
	for _, st := range steps {
		if st.offer.IsValid() {
			s.configure(staticCodecs["PCMU"], st.offer, netip.AddrPort{}, 101, SendRecv)
			continue
		}
		for i := 0; i < st.n; i++ {
			seq := st.seq + uint16(i)
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: st.ssrc,
				SequenceNumber: seq, Timestamp: uint32(seq) * frameSamples}, Payload: payload}
			s.receive(&pkt, st.from, now)
			now = now.Add(frameDuration)
		}
	}
	return now
}

// sendsTo is where the session's next RTP packet goes.
func sendsTo(s *rtpSession) netip.AddrPort {
	buf := make([]byte, 12+frameSamples)
	frame := make([]int16, frameSamples)
	_, dst := s.buildPacket(buf, frame)
	return dst
}

type sourceCase struct {
	name      string
	symmetric bool
	steps     []srcStep
	// received and foreign are the packets taken and dropped; sendsTo is
	// where RTP goes at the end.
	received, foreign uint64
	sendsTo           netip.AddrPort
}

func runSourceCases(t *testing.T, cases []sourceCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _, fc := sourceSession(t, tc.symmetric)
			play(s, tc.steps, time.Unix(1000, 0))
			st := s.stats()
			// BytesReceived, unlike PacketsReceived, is not restarted by a new SSRC.
			if got := st.BytesReceived / frameSamples; got != tc.received || st.PacketsForeign != tc.foreign {
				t.Errorf("received %d, foreign %d; want %d, %d", got, st.PacketsForeign, tc.received, tc.foreign)
			}
			if got := fc.rtp.Load(); got != tc.foreign {
				t.Errorf("server-wide foreign count %d, want %d", got, tc.foreign)
			}
			if got := sendsTo(s); got != tc.sendsTo {
				t.Errorf("RTP goes to %v, want %v", got, tc.sendsTo)
			}
		})
	}
}

// TestRTPStrictSource: by default media is taken only from the address
// and port of the far end's SDP, and sent only there, whoever sends first
// (RTP bleed, AST-2017-005).
func TestRTPStrictSource(t *testing.T) {
	runSourceCases(t, []sourceCase{
		{name: "the attacker's first packets are dropped, the SDP source's taken",
			steps:    []srcStep{offer(srcSDP), packets(srcOutsider, 66, 0, 3), packets(srcSDP, 1, 100, 3)},
			received: 3, foreign: 3, sendsTo: srcSDP},
		{name: "an attacker sending all along never gets the call",
			steps:    append([]srcStep{offer(srcSDP)}, interleave(packets(srcOutsider, 66, 0, 50), packets(srcSDP, 1, 100, 20))...),
			received: 20, foreign: 50, sendsTo: srcSDP},
		{name: "the SDP host from another port is dropped",
			steps:    []srcStep{offer(srcSDP), packets(srcSDPPort, 1, 0, 10)},
			received: 0, foreign: 10, sendsTo: srcSDP},
		{name: "an allowed PBX address that is not the SDP's is dropped",
			steps:    []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 10)},
			received: 0, foreign: 10, sendsTo: srcSDP},
		{name: "before any SDP everything is dropped and nothing sent",
			steps:    []srcStep{packets(srcSDP, 1, 0, 3), packets(srcOutsider, 66, 0, 3)},
			received: 0, foreign: 6, sendsTo: netip.AddrPort{}},
	})
}

// TestRTPSymmetricLatching: with symmetric_rtp a session moves to another
// source only if its IP is allowed (or is the SDP's) and only after
// latchPackets consecutive in-sequence packets of one SSRC; until then it
// sends to the SDP address. An outsider never becomes the source.
func TestRTPSymmetricLatching(t *testing.T) {
	runSourceCases(t, []sourceCase{
		{name: "an outsider never latches, however long and in sequence",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcOutsider, 66, 0, 200)},
			received: 0, foreign: 200, sendsTo: srcSDP},
		{name: "an allowed source latches on its fifth in-sequence packet",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 8)},
			received: 4, foreign: 4, sendsTo: srcAllowed},
		{name: "four packets are not enough",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 4)},
			received: 0, foreign: 4, sendsTo: srcSDP},
		{name: "the SDP host from another port (NAT) latches",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcSDPPort, 1, 0, 5)},
			received: 1, foreign: 4, sendsTo: srcSDPPort},
		{name: "a gap in sequence starts the count again",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 3), packets(srcAllowed, 1, 10, 4)},
			received: 0, foreign: 7, sendsTo: srcSDP},
		{name: "another SSRC starts the count again",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 3), packets(srcAllowed, 2, 3, 4)},
			received: 0, foreign: 7, sendsTo: srcSDP},
		{name: "two allowed sources taking turns latch neither",
			symmetric: true, steps: append([]srcStep{offer(srcSDP)}, interleave(packets(srcAllowed, 1, 0, 20), packets(srcAllowed2, 2, 0, 20))...),
			received: 0, foreign: 40, sendsTo: srcSDP},
		{name: "an outsider's packets in between do not hold an allowed source back",
			symmetric: true, steps: append([]srcStep{offer(srcSDP)}, interleave(packets(srcAllowed, 1, 0, 5), packets(srcOutsider, 1, 5, 5))...),
			received: 1, foreign: 9, sendsTo: srcAllowed},
		{name: "the SDP source is taken while a candidate counts",
			symmetric: true, steps: append([]srcStep{offer(srcSDP)}, interleave(packets(srcSDP, 1, 0, 10), packets(srcAllowed, 2, 0, 4))...),
			received: 10, foreign: 4, sendsTo: srcSDP},
		{name: "once latched elsewhere, the SDP address has to latch again",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 5), packets(srcSDP, 3, 0, 2)},
			received: 1, foreign: 6, sendsTo: srcAllowed},
		{name: "before any SDP nothing latches",
			symmetric: true, steps: []srcStep{packets(srcAllowed, 1, 0, 10)},
			received: 0, foreign: 10, sendsTo: netip.AddrPort{}},
	})
}

// TestRTPSourceAfterReInvite: a re-INVITE (or UPDATE) that moves the far
// end's address makes the new SDP address the only source again, in both
// modes; it never falls back to "the first packet wins".
func TestRTPSourceAfterReInvite(t *testing.T) {
	runSourceCases(t, []sourceCase{
		{name: "strict: the new address is taken, the old one and the first sender dropped",
			steps: []srcStep{offer(srcSDP), packets(srcSDP, 1, 0, 3), offer(srcSDP2),
				packets(srcOutsider, 66, 0, 3), packets(srcSDP, 1, 3, 3), packets(srcSDP2, 2, 0, 3)},
			received: 6, foreign: 6, sendsTo: srcSDP2},
		{name: "strict: the same address again (a session refresh) changes nothing",
			steps:    []srcStep{offer(srcSDP), packets(srcSDP, 1, 0, 3), offer(srcSDP), packets(srcSDP, 1, 3, 3)},
			received: 6, foreign: 0, sendsTo: srcSDP},
		{name: "symmetric: a latched source is let go for the new address",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 5), offer(srcSDP2),
				packets(srcAllowed, 1, 5, 1), packets(srcSDP2, 2, 0, 2)},
			received: 3, foreign: 5, sendsTo: srcSDP2},
		{name: "symmetric: the latch survives a refresh with the same address",
			symmetric: true, steps: []srcStep{offer(srcSDP), packets(srcAllowed, 1, 0, 5), offer(srcSDP), packets(srcAllowed, 1, 5, 2)},
			received: 3, foreign: 4, sendsTo: srcAllowed},
		{name: "symmetric: after the move an outsider still cannot latch",
			symmetric: true, steps: []srcStep{offer(srcSDP), offer(srcSDP2), packets(srcOutsider, 66, 0, 50)},
			received: 0, foreign: 50, sendsTo: srcSDP2},
		{name: "symmetric: after the move an allowed source latches by the same rule",
			symmetric: true, steps: []srcStep{offer(srcSDP), offer(srcSDP2), packets(srcAllowed, 1, 0, 6)},
			received: 2, foreign: 4, sendsTo: srcAllowed},
	})
}

// TestRTCPSource: RTCP is taken only from the IP of the far end's RTCP
// address (RFC 3605 a=rtcp, else RTP's); reports go there. With
// symmetric_rtp, RTCP from a latched source's IP is taken and answered
// at its source.
func TestRTCPSource(t *testing.T) {
	report, err := (&rtcp.SenderReport{SSRC: 1, NTPTime: 0x1234567800000000}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	natRTCP := netip.MustParseAddrPort("198.51.100.7:31555") // not the latched RTP port + 1
	for _, tc := range []struct {
		name      string
		symmetric bool
		rtcpAttr  netip.AddrPort // the SDP's a=rtcp, or none
		latch     bool           // srcAllowed latches first
		from      []netip.AddrPort
		received  uint64
		foreign   uint64
		reportsTo netip.AddrPort
	}{
		{name: "from the SDP host, any port", from: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:4001"), netip.MustParseAddrPort("192.0.2.10:9999")},
			received: 2, reportsTo: netip.MustParseAddrPort("192.0.2.10:4001")},
		{name: "from an outsider", from: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.66:4001"), srcOutsider},
			foreign: 2, reportsTo: netip.MustParseAddrPort("192.0.2.10:4001")},
		{name: "a=rtcp names another host: only that host", rtcpAttr: netip.MustParseAddrPort("192.0.2.50:7000"),
			from:     []netip.AddrPort{netip.MustParseAddrPort("192.0.2.50:7000"), netip.MustParseAddrPort("192.0.2.10:4001")},
			received: 1, foreign: 1, reportsTo: netip.MustParseAddrPort("192.0.2.50:7000")},
		{name: "strict: an allowed PBX address is not the far end", from: []netip.AddrPort{natRTCP},
			foreign: 1, reportsTo: netip.MustParseAddrPort("192.0.2.10:4001")},
		{name: "symmetric: from the latched source's IP, answered there", symmetric: true, latch: true,
			from: []netip.AddrPort{natRTCP}, received: 1, reportsTo: natRTCP},
		{name: "symmetric: an allowed IP not latched onto is foreign", symmetric: true,
			from: []netip.AddrPort{natRTCP}, foreign: 1, reportsTo: netip.MustParseAddrPort("192.0.2.10:4001")},
		{name: "symmetric: an outsider is foreign", symmetric: true, latch: true,
			from: []netip.AddrPort{srcOutsider}, foreign: 1, reportsTo: netip.MustParseAddrPort("198.51.100.7:30001")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, fc := sourceSession(t, tc.symmetric)
			s.configure(staticCodecs["PCMU"], srcSDP, tc.rtcpAttr, 101, SendRecv)
			now := time.Unix(1000, 0)
			if tc.latch {
				now = play(s, []srcStep{packets(srcAllowed, 1, 0, latchPackets)}, now)
			}
			for _, from := range tc.from {
				s.receiveRTCP(report, from, now)
			}
			st := s.stats()
			if st.RTCPReceived != tc.received || st.RTCPForeign != tc.foreign || fc.rtcp.Load() != tc.foreign {
				t.Errorf("rtcp received %d, foreign %d (server %d); want %d, %d", st.RTCPReceived, st.RTCPForeign, fc.rtcp.Load(), tc.received, tc.foreign)
			}
			s.mu.Lock()
			dst := s.rtcpDst
			s.mu.Unlock()
			if dst != tc.reportsTo {
				t.Errorf("reports go to %v, want %v", dst, tc.reportsTo)
			}
		})
	}
}

// TestForeignDropsLogged: dropped packets are logged at Warn with the
// source, the first at once and then once per foreignLogEvery with the
// count since, so that a flood cannot flood the log; an allowed source
// on its way to latching is counted but not logged.
func TestForeignDropsLogged(t *testing.T) {
	s, logs, _ := sourceSession(t, true)
	start := time.Unix(1000, 0)
	// 25 s of an outsider at one packet per 20 ms: 1250 packets.
	end := play(s, []srcStep{offer(srcSDP), packets(srcOutsider, 66, 0, 1250), packets(srcAllowed, 1, 0, latchPackets)}, start)
	for i := 0; i < 100; i++ {
		s.receiveRTCP([]byte{0x80, 201, 0, 1, 0, 0, 0, 1}, srcOutsider, end.Add(time.Duration(i)*time.Second))
	}
	rtpLines := logs.records("rtp from a foreign source dropped")
	var counts []string
	for _, r := range rtpLines {
		if r["level"] != "WARN" || r["source"] != srcOutsider.String() || r["protocol"] != "rtp" {
			t.Errorf("log record %v", r)
		}
		counts = append(counts, r["dropped"])
	}
	// At 0 s, 10 s and 20 s: the first packet, then the 500 dropped since each line.
	if want := []string{"1", "500", "500"}; !slices.Equal(counts, want) {
		t.Errorf("rtp warnings counted %v, want %v", counts, want)
	}
	rtcpLines := logs.records("rtcp from a foreign source dropped")
	if len(rtcpLines) != 10 || rtcpLines[0]["source"] != srcOutsider.String() || rtcpLines[1]["dropped"] != "10" {
		t.Errorf("rtcp warnings %v, want 10 (one per 10 s of 100 s)", rtcpLines)
	}
	if got := logs.records("rtp source latched"); len(got) != 1 || got[0]["source"] != srcAllowed.String() || got[0]["level"] != "INFO" {
		t.Errorf("latch records %v", got)
	}
}

// TestRTCPAttribute: a=rtcp (RFC 3605) sets where RTCP goes; without it,
// RTP's port plus one.
func TestRTCPAttribute(t *testing.T) {
	for _, tc := range []struct {
		name, attr string
		want       netip.AddrPort
	}{
		{"none", "", netip.MustParseAddrPort("192.0.2.10:4001")},
		{"port", "a=rtcp:5555\r\n", netip.MustParseAddrPort("192.0.2.10:5555")},
		{"port and address", "a=rtcp:5555 IN IP4 192.0.2.99\r\n", netip.MustParseAddrPort("192.0.2.99:5555")},
		{"garbage", "a=rtcp:x IN IP4 nowhere\r\n", netip.MustParseAddrPort("192.0.2.10:4001")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, err := parseSDP([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n" + tc.attr))
			if err != nil {
				t.Fatal(err)
			}
			if got := md.rtcpRemote(); got != tc.want {
				t.Errorf("rtcp to %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSymmetricRTPOverSockets runs NAT mode over real sockets: the PBX's
// SDP names one port but its RTP comes from another on an allowed
// address, and an outsider on 127.0.0.2 sends in-sequence RTP too. The
// call latches onto the PBX's real source (hearing it and sending back to
// it), never onto the outsider, which receives nothing; without
// symmetric_rtp the PBX's other port is dropped like the outsider.
func TestSymmetricRTPOverSockets(t *testing.T) {
	for _, symmetric := range []bool{true, false} {
		name := "strict"
		if symmetric {
			name = "symmetric"
		}
		t.Run(name, func(t *testing.T) {
			heard := newRecorder()
			p, dialogs := answeringPeer(t, SendRecv, nil)
			tc := p.trunk("pbx")
			tc.SymmetricRTP = symmetric
			s := startServer(t, []TrunkConfig{tc})
			call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{AudioOut: heard})
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			<-dialogs
			ours := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(call.LocalRTPPort()))
			natted := newIdlePeer(t) // the PBX's RTP, behind a NAT that changed its port
			outsider := newIdlePeerOn(t, "127.0.0.2")
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); sendToneRTP(outsider, ours, 2000, stop) }()
			go func() { defer wg.Done(); sendToneRTP(natted, ours, 600, stop) }()
			defer func() { close(stop); wg.Wait() }()
			// The call sends on its clock (silence here): where it goes is the test.
			if symmetric {
				waitFor(t, "the PBX's tone", func() bool { return len(heard.Samples()) >= 4000 })
				got := heard.Samples()
				got = got[len(got)-2400:]
				if f := peakFreq(got); f < 590 || f > 610 {
					t.Errorf("heard a peak at %.0f Hz, want the PBX's 600", f)
				}
				if p := purity(got, 2000); p > -30 {
					t.Errorf("the outsider's tone leaked in at %.1f dB", p)
				}
				natAddr := natted.rtp.LocalAddr().(*net.UDPAddr)
				waitFor(t, "RTP back to the PBX's real source", func() bool { return call.Stats().Remote == natAddr.String() })
				if n := readAny(natted.rtp, time.Second); n == 0 {
					t.Error("the PBX's real source received no RTP")
				}
			} else {
				waitFor(t, "both dropped as foreign", func() bool { return call.Stats().PacketsForeign >= 40 })
				if st := call.Stats(); st.PacketsReceived != 0 || st.Remote != p.rtp.LocalAddr().String() {
					t.Errorf("strict call took packets or moved: %+v", st)
				}
			}
			if n := readAny(outsider.rtp, time.Second); n != 0 {
				t.Errorf("the outsider received %d bytes", n)
			}
			if r, _ := s.ForeignPackets(); r < 20 {
				t.Errorf("server-wide foreign rtp %d, want the outsider's packets counted", r)
			}
		})
	}
}

// readAny returns how many bytes c receives within d.
func readAny(c *net.UDPConn, d time.Duration) int {
	buf := make([]byte, 1500)
	total := 0
	deadline := time.Now().Add(d)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return total
		}
		total += n
	}
}
