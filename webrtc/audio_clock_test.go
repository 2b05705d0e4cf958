package webrtc

import (
	"context"
	"testing"

	"github.com/segue-rtc/segue/mediaclock"
	"github.com/segue-rtc/segue/transcode"
)

// TestSendClockStall checks what a peer sends toward the browser after the
// media clock stalled for 100 ms (five frames due at once): three frames
// back to back, with RTP timestamps that jump over the two skipped ones
// (the browser hears a gap, not squeezed time), and the two counted.
func TestSendClockStall(t *testing.T) {
	p, _ := benchPeer(t)
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	defer p.cancel(nil)
	p.tickBuf, p.silence = make(transcode.PCM16, frameSamples), make(transcode.PCM16, frameSamples)
	out := &recordRTP{}
	tx, err := p.newTx(benchCodecs[1].params, 77, out) // PCMU
	if err != nil {
		t.Fatal(err)
	}
	p.tx.Store(tx)
	levels := []int16{1000, 2000, 4000, 8000, 16000}
	for _, l := range levels {
		f := make(transcode.PCM16, frameSamples)
		for i := range f {
			f[i] = l
		}
		_ = p.in.WriteSample(f)
	}
	p.mediaTick(1, 0)
	p.mediaTick(mediaclock.MaxBurst, 2)

	// Frame 0 on time; frames 1 and 2 skipped; frames 3 and 4, then
	// silence to pad the empty queue.
	wantTS := []uint32{0, 3, 4, 5}
	wantLevel := []int16{1000, 8000, 16000, 0}
	if len(out.hdrs) != len(wantTS) {
		t.Fatalf("%d packets sent, want %d", len(out.hdrs), len(wantTS))
	}
	for i, h := range out.hdrs {
		if d := h.Timestamp - out.hdrs[0].Timestamp; d != wantTS[i]*frameSamples {
			t.Errorf("packet %d: timestamp +%d, want +%d", i, d, wantTS[i]*frameSamples)
		}
		if i > 0 && h.SequenceNumber != out.hdrs[i-1].SequenceNumber+1 {
			t.Errorf("packet %d: sequence %d after %d", i, h.SequenceNumber, out.hdrs[i-1].SequenceNumber)
		}
		var pcm transcode.PCM16
		dec, _ := transcode.NewULawDecoder(pcmSink{&pcm})
		_ = dec.WriteSample(out.payloads[i])
		lvl, want := pcm[frameSamples/2], wantLevel[i]
		if d := int(lvl) - int(want); d > int(want)/16+8 || -d > int(want)/16+8 {
			t.Errorf("packet %d carries level %d, want about %d", i, lvl, want)
		}
	}
	if st := p.Stats(); st.Outbound.Skipped != 2 {
		t.Errorf("Outbound.Skipped = %d, want 2", st.Outbound.Skipped)
	}
}

// TestAudioInOverflowCounted checks that audio written faster than the
// clock sends it is dropped past 100 ms and counted.
func TestAudioInOverflowCounted(t *testing.T) {
	p, _ := benchPeer(t)
	_ = p.in.WriteSample(make(transcode.PCM16, (maxQueuedFrames+3)*frameSamples))
	if st := p.Stats(); st.Outbound.Dropped != 3 {
		t.Errorf("Outbound.Dropped = %d, want 3", st.Outbound.Dropped)
	}
}

type pcmSink struct{ pcm *transcode.PCM16 }

func (s pcmSink) WriteSample(p transcode.PCM16) error { *s.pcm = append(*s.pcm, p...); return nil }
func (s pcmSink) SampleRate() int                     { return pcmRate }
func (s pcmSink) String() string                      { return "sink" }
func (s pcmSink) Close() error                        { return nil }
