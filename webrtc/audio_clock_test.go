package webrtc

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
)

// TestSendClockStall checks what a peer sends toward the browser on a
// tick after a stall that asks it to skip two frames and send three:
// three frames back to back, with RTP timestamps that jump over the two
// skipped ones (the browser hears a gap, not squeezed time), the two
// counted, and the audio that waited meanwhile sent rather than lost.
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
	p.mediaTick(3, 2)

	// Frame 0 on time; after the stall the next three frames of audio,
	// stamped after the two skipped frames' time.
	wantTS := []uint32{0, 3, 4, 5}
	wantLevel := []int16{1000, 2000, 4000, 8000}
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

// closedTrack is a track writer whose peer connection has closed.
type closedTrack struct{}

func (closedTrack) WriteRTP(*rtp.Header, []byte) (int, error) { return 0, io.ErrClosedPipe }
func (closedTrack) Write([]byte) (int, error)                 { return 0, io.ErrClosedPipe }

// closedWriter is an output whose call has ended.
type closedWriter struct{}

func (closedWriter) WriteSample(transcode.PCM16) error { return transcode.ErrClosed }
func (closedWriter) SampleRate() int                   { return pcmRate }
func (closedWriter) String() string                    { return "closed" }
func (closedWriter) Close() error                      { return nil }

// TestOrdinaryCloseIsQuiet checks that the errors of a call that is
// ending, a closed track toward the browser and a closed output, are
// counted without a warning in the log; another error still warns.
func TestOrdinaryCloseIsQuiet(t *testing.T) {
	var logs bytes.Buffer
	p, _ := benchPeer(t)
	p.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	defer p.cancel(nil)
	p.tickBuf, p.silence = make(transcode.PCM16, frameSamples), make(transcode.PCM16, frameSamples)
	tx, err := p.newTx(benchCodecs[1].params, 77, closedTrack{})
	if err != nil {
		t.Fatal(err)
	}
	p.tx.Store(tx)
	rx, err := p.newRx(benchCodecs[1].params)
	if err != nil {
		t.Fatal(err)
	}
	p.rx.Store(rx)
	p.SwapAudioOut(closedWriter{})
	for i := range 10 {
		_ = p.in.WriteSample(make(transcode.PCM16, frameSamples))
		rx.jitter.Push(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * frameSamples), SSRC: 1},
			Payload: make([]byte, frameSamples)})
	}
	for range 10 {
		p.mediaTick(1, 0)
	}
	st := p.Stats()
	if st.Outbound.Malformed == 0 {
		t.Errorf("no send failure counted: %+v", st.Outbound)
	}
	if p.rxStats.outErrors.Load() == 0 {
		t.Error("no output failure counted")
	}
	if strings.Contains(logs.String(), "WARN") {
		t.Errorf("an ordinary close logged a warning:\n%s", logs.String())
	}
}
