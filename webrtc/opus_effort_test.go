package webrtc

import (
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/segue-rtc/segue/transcode"
)

// lossOf is a report's fraction lost (in 1/256) for pct percent.
func lossOf(pct float64) uint8 { return uint8(pct * 256 / 100) }

// TestFECPolicy feeds the policy a sequence of receiver reports on a
// fake clock and checks the effort after each: cheap until a report of
// 1 % or more, FEC tuned to the loss (5-30 %) from then on, and cheap
// again only at a report without loss 10 s or more after the last loss.
func TestFECPolicy(t *testing.T) {
	cheap := cheapOpusEffort
	fecAt := func(loss int) transcode.OpusEffort {
		return transcode.OpusEffort{Complexity: DefaultOpusComplexity, FEC: true, PacketLoss: loss}
	}
	type step struct {
		at      time.Duration // since the start
		loss    float64       // percent
		want    transcode.OpusEffort
		changed bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no loss stays cheap", []step{
			{0, 0, cheap, false}, {time.Second, 0, cheap, false}, {time.Hour, 0, cheap, false},
		}},
		{"loss under 1 % is none", []step{
			{0, 0.8, cheap, false}, {time.Second, 0.4, cheap, false},
		}},
		{"loss turns FEC on at once, at least 5 %", []step{
			{0, 0, cheap, false}, {time.Second, 1.2, fecAt(5), true}, {2 * time.Second, 1.2, fecAt(5), false},
		}},
		{"expected loss follows the reports, at most 30 %", []step{
			{0, 12.5, fecAt(13), true}, {time.Second, 20, fecAt(20), true}, {2 * time.Second, 50, fecAt(30), true},
			{3 * time.Second, 0, fecAt(30), false}, {4 * time.Second, 7.1, fecAt(8), true},
		}},
		{"back to cheap after 10 s without loss", []step{
			{0, 3, fecAt(5), true},
			{time.Second, 0, fecAt(5), false},
			{9 * time.Second, 0, fecAt(5), false},
			{9*time.Second + 999*time.Millisecond, 0.5, fecAt(5), false},
			{10 * time.Second, 0, cheap, true},
			{11 * time.Second, 0, cheap, false},
		}},
		{"a loss restarts the hold", []step{
			{0, 3, fecAt(5), true},
			{8 * time.Second, 2, fecAt(5), false},
			{12 * time.Second, 0, fecAt(5), false},
			{17 * time.Second, 0, fecAt(5), false},
			{18 * time.Second, 0, cheap, true},
			{19 * time.Second, 4, fecAt(5), true},
		}},
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fecPolicy{hold: fecHold}
			for i, s := range tc.steps {
				got, changed := f.report(start.Add(s.at), lossOf(s.loss))
				if got != s.want || changed != s.changed {
					t.Errorf("step %d (%v, %.1f %% lost): %+v changed %v, want %+v changed %v", i, s.at, s.loss, got, changed, s.want, s.changed)
				}
			}
		})
	}
}

// TestAdaptOpusEffort checks what a peer does with the policy's answers:
// the encoder's control follows them, and changes of mode (not of the
// expected loss alone) are counted on the peer and the engine, whose
// gauge of peers in FEC mode goes up and down with them.
func TestAdaptOpusEffort(t *testing.T) {
	e, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := &Peer{e: e, log: e.log, effort: e.newOpusEffort()}
	f := &fecPolicy{hold: fecHold}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at         time.Duration
		loss       float64
		fec        bool
		switches   uint64
		fecActive  int64
		packetLoss int
	}{
		{0, 0, false, 0, 0, 0},
		{time.Second, 10, true, 1, 1, 10},
		{2 * time.Second, 20, true, 1, 1, 20},
		{11 * time.Second, 0, true, 1, 1, 20},
		{12 * time.Second, 0, false, 2, 0, 0},
	}
	for i, s := range steps {
		p.adaptOpusEffort(f, now.Add(s.at), lossOf(s.loss))
		got := p.effort.Effort()
		if got.FEC != s.fec || got.PacketLoss != s.packetLoss {
			t.Errorf("step %d: effort %+v, want FEC %v at %d %%", i, got, s.fec, s.packetLoss)
		}
		if n := p.effortSwitches.Load(); n != s.switches {
			t.Errorf("step %d: peer counted %d switches, want %d", i, n, s.switches)
		}
		if st := e.OpusEffortStats(); st.Switches != s.switches || st.FECActive != s.fecActive {
			t.Errorf("step %d: engine %+v, want %d switches, %d in FEC", i, st, s.switches, s.fecActive)
		}
	}
}

// fecFrom counts the packets from index from on that carry in-band FEC,
// and returns how many there are in all.
func fecFrom(ps []audioPacket, from int) (fec, all int) {
	for _, p := range ps[min(from, len(ps)):] {
		if transcode.OpusHasFEC(p.payload) {
			fec++
		}
		all++
	}
	return fec, all
}

// TestAdaptiveOpusEffortFollowsReports connects a pion browser over
// loopback to a gateway with opus_complexity unset (auto) and plays a
// tone to it: its packets carry no FEC. The browser then sends receiver
// reports of 10 % loss on the gateway's audio, and the packets it
// receives carry FEC; once it stops, its own interceptor's reports (no
// loss) bring the encoder back to the cheap effort after the hold, and
// FEC goes. One stream throughout: the sequence numbers run on without
// a break, the timestamps by whole frames.
func TestAdaptiveOpusEffortFollowsReports(t *testing.T) {
	e := newTestEngine(t, Config{}, withFECHold(time.Second))
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	defer playTone(t, p.AudioIn(), 440)()

	eventually(t, "50 packets of audio", func() bool { return len(b.receivedAudio()) >= 50 })
	if fec, all := fecFrom(b.receivedAudio(), 0); fec != 0 {
		t.Fatalf("%d of %d packets carry FEC before any loss was reported", fec, all)
	}
	if st := p.Stats().Outbound; st.Encoded == 0 || st.FEC != 0 || st.EffortSwitches != 0 {
		t.Errorf("before loss: %d frames encoded, %d with FEC, %d switches; want some, 0, 0", st.Encoded, st.FEC, st.EffortSwitches)
	}

	ssrc := b.receivedAudio()[0].ssrc
	report := func() {
		rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: ssrc, FractionLost: lossOf(10)}}}
		if err := b.pc.WriteRTCP([]rtcp.Packet{rr}); err != nil {
			t.Errorf("browser WriteRTCP: %v", err)
		}
	}
	mark := len(b.receivedAudio())
	stop := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			report()
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	eventually(t, "40 packets with FEC", func() bool { fec, _ := fecFrom(b.receivedAudio(), mark); return fec >= 40 })
	if got := p.effort.Effort(); !got.FEC || got.Complexity != DefaultOpusComplexity || got.PacketLoss != 10 {
		t.Errorf("effort under 10 %% loss %+v, want complexity %d with FEC for 10 %%", got, DefaultOpusComplexity)
	}
	if st := e.OpusEffortStats(); st.FECActive != 1 || st.Switches != 1 {
		t.Errorf("engine under loss: %+v, want one peer in FEC after one switch", st)
	}
	close(stop)
	<-reported

	eventually(t, "the cheap effort again", func() bool { return e.OpusEffortStats().Switches == 2 })
	mark = len(b.receivedAudio()) + 2 // the packet after the switch may carry the last FEC
	eventually(t, "50 packets after the switch back", func() bool { return len(b.receivedAudio()) >= mark+50 })
	if fec, all := fecFrom(b.receivedAudio(), mark); fec != 0 {
		t.Errorf("%d of %d packets carry FEC after the reports showed no loss again", fec, all)
	}
	if st := e.OpusEffortStats(); st.FECActive != 0 {
		t.Errorf("engine after the loss: %+v, want no peer in FEC", st)
	}
	st := p.Stats().Outbound
	if st.EffortSwitches != 2 || st.FEC == 0 || st.FEC >= st.Encoded {
		t.Errorf("after: %d frames encoded, %d with FEC, %d switches; want some of them with FEC, 2 switches", st.Encoded, st.FEC, st.EffortSwitches)
	}
	ps := b.receivedAudio()
	for i := 1; i < len(ps); i++ {
		// A tick the media clock skipped on a busy machine moves the
		// timestamp on by more than one frame, never back.
		if d := ps[i].ts - ps[i-1].ts; ps[i].ssrc != ps[0].ssrc || ps[i].seq != ps[i-1].seq+1 || d == 0 || d%960 != 0 || d > 1<<31 {
			t.Fatalf("packet %d: ssrc %d seq %d ts %d after ssrc %d seq %d ts %d: the stream broke", i, ps[i].ssrc, ps[i].seq, ps[i].ts, ps[0].ssrc, ps[i-1].seq, ps[i-1].ts)
		}
	}
	t.Logf("%d packets, %d frames encoded with FEC of %d", len(ps), st.FEC, st.Encoded)
}
