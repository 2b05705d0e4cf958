package transcode_test

import (
	"errors"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestOpusEffortSwitch runs one encoder stage through the gateway's two
// efforts toward the browser, switched while it runs: the cheap one
// (complexity 1, no FEC), the quality one (complexity 5, FEC for 10 %
// loss), and back. Packets carry in-band FEC only while the quality
// effort is on, all of them decode as one stream, and the decoded speech
// follows the source throughout.
func TestOpusEffortSwitch(t *testing.T) {
	cheap := transcode.OpusEffort{Complexity: 1}
	quality := transcode.OpusEffort{Complexity: 5, FEC: true, PacketLoss: 10}
	const phase = 100 // frames of each effort: 2 s
	for _, codec := range transcode.OpusCodecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			src := audiotest.Speech(8000, 3*phase*20*time.Millisecond, 6)
			ctl, err := transcode.NewOpusEffortControl(cheap)
			if err != nil {
				t.Fatal(err)
			}
			rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
			enc, err := transcode.NewOpusEncoder(rec, 8000, transcode.OpusConfig{Codec: codec, Control: ctl})
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range []transcode.OpusEffort{cheap, quality, cheap} {
				if err := ctl.Set(e); err != nil {
					t.Fatal(err)
				}
				writeFrames(t, enc, src[i*phase*160:(i+1)*phase*160], 160)
			}
			packets := rec.Payloads()
			if len(packets) != 3*phase {
				t.Fatalf("%d packets, want %d", len(packets), 3*phase)
			}
			// The frame after a switch may still show the previous
			// setting: LBRR of a frame rides in the next packet.
			count := func(ps [][]byte) (n int) {
				for _, p := range ps[2:] {
					if transcode.OpusHasFEC(p) {
						n++
					}
				}
				return n
			}
			before, during, after := count(packets[:phase]), count(packets[phase:2*phase]), count(packets[2*phase:])
			t.Logf("packets with FEC: cheap %d, quality %d, cheap again %d (of %d each)", before, during, after, phase-2)
			if before != 0 || after != 0 {
				t.Errorf("%d and %d packets carry FEC at the cheap effort, want none", before, after)
			}
			if during < (phase-2)*3/4 {
				t.Errorf("%d of %d packets carry FEC at the quality effort, want at least three quarters", during, phase-2)
			}
			if all, fec := ctl.Frames(); all != 3*phase || fec != phase {
				t.Errorf("Frames() = %d, %d FEC; want %d, %d", all, fec, 3*phase, phase)
			}
			got := aligned(src, opusDecode(t, codec, packets, false))
			for i := range 3 {
				part := func(s transcode.PCM16) transcode.PCM16 { return s[i*phase*160 : min((i+1)*phase*160, len(s))] }
				if c := audiotest.Correlation(part(src), part(got)); c < 0.8 {
					t.Errorf("phase %d: correlation with the source %.3f, want at least 0.8", i, c)
				}
			}
			// A lost packet of the quality phase is rebuilt from the next.
			fecSNR, plcSNR := lossSNR(t, codec, packets[phase:2*phase])
			if fecSNR < plcSNR+3 {
				t.Errorf("after the switch, FEC recovers lost frames at %.2f dB, PLC at %.2f dB: want FEC 3 dB better", fecSNR, plcSNR)
			}
		})
	}
}

func TestOpusEffortControlChecks(t *testing.T) {
	for _, e := range []transcode.OpusEffort{{Complexity: 0}, {Complexity: 11}, {Complexity: 5, PacketLoss: -1}, {Complexity: 5, PacketLoss: 101}} {
		if _, err := transcode.NewOpusEffortControl(e); !errors.Is(err, transcode.ErrBadConfig) {
			t.Errorf("NewOpusEffortControl(%+v): %v, want ErrBadConfig", e, err)
		}
	}
	start := transcode.OpusEffort{Complexity: 3, FEC: true, PacketLoss: 7}
	ctl, err := transcode.NewOpusEffortControl(start)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Set(transcode.OpusEffort{Complexity: 12}); !errors.Is(err, transcode.ErrBadConfig) {
		t.Errorf("Set of complexity 12: %v, want ErrBadConfig", err)
	}
	if got := ctl.Effort(); got != start {
		t.Errorf("after a refused Set: %+v, want %+v", got, start)
	}
	for _, e := range []transcode.OpusEffort{{Complexity: 10, PacketLoss: 100}, {Complexity: 1, FEC: true}} {
		if err := ctl.Set(e); err != nil {
			t.Fatal(err)
		}
		if got := ctl.Effort(); got != e {
			t.Errorf("Effort() = %+v, want %+v", got, e)
		}
	}
}

// TestOpusEffortFramesCountCodedFEC: frames encoded with FEC asked for
// where none is coded (complexity 1, or no loss expected) are not counted
// as FEC frames.
func TestOpusEffortFramesCountCodedFEC(t *testing.T) {
	for _, e := range []transcode.OpusEffort{{Complexity: 1, FEC: true, PacketLoss: 5}, {Complexity: 2, FEC: true},
		{Complexity: 2, FEC: true, PacketLoss: 5}, {Complexity: 5, PacketLoss: 5}} {
		ctl, err := transcode.NewOpusEffortControl(e)
		if err != nil {
			t.Fatal(err)
		}
		rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
		enc, err := transcode.NewOpusEncoder(rec, 8000, transcode.OpusConfig{Control: ctl})
		if err != nil {
			t.Fatal(err)
		}
		writeFrames(t, enc, audiotest.Speech(8000, 200*time.Millisecond, 1), 160)
		var coded uint64
		for _, p := range rec.Payloads()[1:] {
			if transcode.OpusHasFEC(p) {
				coded = 1
			}
		}
		all, fec := ctl.Frames()
		if all != 10 || (fec > 0) != e.CodesFEC() || (coded == 1) != e.CodesFEC() {
			t.Errorf("%+v: %d frames, %d counted with FEC, FEC in the packets %v", e, all, fec, coded == 1)
		}
	}
}
