package sip

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
)

// TestSendClockStall checks what a session sends on a tick after a stall
// that asks it to skip two frames and send three: three frames, back to
// back and in order, with RTP timestamps that jump over the two skipped
// ones (the far end hears a 40 ms gap, not squeezed time), the two
// counted, and the audio that waited meanwhile sent rather than lost.
func TestSendClockStall(t *testing.T) {
	s, _, _ := sourceSession(t, false)
	far, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	s.configure(staticCodecs["PCMU"], far.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{}, 101, SendRecv)

	// Five frames of audio, frame k at a level of its own.
	levels := []int16{1000, 2000, 4000, 8000, 16000}
	for _, l := range levels {
		f := make(transcode.PCM16, frameSamples)
		for i := range f {
			f[i] = l
		}
		s.push(f)
	}
	s.tick(1, 0) // on time: frame 0
	s.tick(3, 2)

	var got []rtp.Packet
	buf := make([]byte, 1500)
	_ = far.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < 4 {
		n, err := far.Read(buf)
		if err != nil {
			t.Fatalf("read rtp: %v (got %d packets)", err, len(got))
		}
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	// Frame 0 goes on time. After the stall the next three frames of
	// audio go out, stamped after the two skipped frames' time.
	wantLevel := []int16{1000, 2000, 4000, 8000}
	wantTS := []uint32{0, 3, 4, 5}
	for i, p := range got {
		if d := p.Timestamp - got[0].Timestamp; d != wantTS[i]*frameSamples {
			t.Errorf("packet %d: timestamp +%d, want +%d", i, d, wantTS[i]*frameSamples)
		}
		if i > 0 && p.SequenceNumber != got[i-1].SequenceNumber+1 {
			t.Errorf("packet %d: sequence %d after %d", i, p.SequenceNumber, got[i-1].SequenceNumber)
		}
		pcm := make(transcode.PCM16, 0, frameSamples)
		rec := &pcmRecorder{pcm: &pcm}
		dec, _ := transcode.NewULawDecoder(rec)
		_ = dec.WriteSample(p.Payload)
		if lvl := pcm[frameSamples/2]; absDiff(lvl, wantLevel[i]) > wantLevel[i]/16+8 {
			t.Errorf("packet %d carries level %d, want about %d", i, lvl, wantLevel[i])
		}
	}
	st := s.stats()
	if st.FramesSkippedSend != 2 || st.PacketsSent != 4 {
		t.Errorf("stats: %d frames skipped, %d packets sent; want 2 and 4", st.FramesSkippedSend, st.PacketsSent)
	}
}

// TestSendQueueOverflowCounted checks that audio written faster than it is
// sent is dropped past 400 ms, and counted in frames.
func TestSendQueueOverflowCounted(t *testing.T) {
	s, _, _ := sourceSession(t, false)
	s.push(make(transcode.PCM16, sendQueueSamples+10*frameSamples+50))
	if st := s.stats(); st.FramesDroppedSend != 10 || st.GatewayDropsSend() != 10 {
		t.Errorf("FramesDroppedSend = %d, GatewayDropsSend = %d; want 10", st.FramesDroppedSend, st.GatewayDropsSend())
	}
}

// TestPlayoutClockStall checks that a stall of the playout loses none of
// the far end's audio: its packets wait in the jitter buffer and play
// after it, and none is counted as dropped (the four frames not sent in
// the other direction are counted there).
func TestPlayoutClockStall(t *testing.T) {
	s, _, _ := sourceSession(t, false)
	s.configure(staticCodecs["PCMU"], srcSDP, netip.AddrPort{}, 101, SendRecv)
	played := 0
	s.swapOut(countingWriter{&played})
	// Packets arrive while the clock plays two frames, then a tick after
	// a stall skips four frames and plays three. The jitter buffer holds
	// at most 120 ms, so the packets come in two runs.
	now := play(s, []srcStep{packets(srcSDP, 7, 100, 6)}, time.Now().Add(-time.Second))
	s.tick(1, 0)
	s.tick(1, 0)
	play(s, []srcStep{packets(srcSDP, 7, 106, 3)}, now)
	s.tick(3, 4)
	for range 4 {
		s.tick(1, 0)
	}
	st := s.stats()
	if st.GatewayDropsReceive() != 0 {
		t.Errorf("%d received frames counted as dropped", st.GatewayDropsReceive())
	}
	if played != 9*frameSamples {
		t.Errorf("played %d samples, want the 9 frames received (%d)", played, 9*frameSamples)
	}
}

type pcmRecorder struct{ pcm *transcode.PCM16 }

func (r *pcmRecorder) WriteSample(p transcode.PCM16) error { *r.pcm = append(*r.pcm, p...); return nil }
func (r *pcmRecorder) SampleRate() int                     { return 8000 }
func (r *pcmRecorder) String() string                      { return "recorder" }
func (r *pcmRecorder) Close() error                        { return nil }

type countingWriter struct{ n *int }

func (c countingWriter) WriteSample(p transcode.PCM16) error { *c.n += len(p); return nil }
func (c countingWriter) SampleRate() int                     { return 8000 }
func (c countingWriter) String() string                      { return "counter" }
func (c countingWriter) Close() error                        { return nil }

func absDiff(a, b int16) int16 {
	if a > b {
		return a - b
	}
	return b - a
}
