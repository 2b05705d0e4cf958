package main

import (
	"testing"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestMarkerSurvivesTheCodecs decodes the pre-encoded microphone, Opus and
// μ-law, frame by frame as the generator judges returned audio: every
// frame past the decoder's start carries the marker; silence, speech
// alone and a tone elsewhere in the band do not.
func TestMarkerSurvivesTheCodecs(t *testing.T) {
	opus, err := micOpus()
	if err != nil {
		t.Fatal(err)
	}
	if len(opus) != int(loopDur/frameDur) {
		t.Fatalf("%d Opus packets, want %d", len(opus), loopDur/frameDur)
	}
	dec, err := transcode.GoOpus().NewDecoder(8000)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 960)
	bad := 0
	for i, p := range opus {
		n, err := dec.Decode(p, pcm)
		if err != nil {
			t.Fatal(err)
		}
		if i >= 2 && !hasMarker(pcm[:n], 8000) {
			bad++
		}
	}
	if bad != 0 {
		t.Errorf("%d of %d Opus frames lost the marker", bad, len(opus))
	}

	ulaw, err := micPCMU()
	if err != nil {
		t.Fatal(err)
	}
	rec := audiotest.NewRecorder(8000)
	udec, err := transcode.NewULawDecoder(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ulaw {
		_ = udec.WriteSample(p)
	}
	got := rec.Samples()
	for off := 0; off+160 <= len(got); off += 160 {
		if !hasMarker(got[off:off+160], 8000) {
			t.Fatalf("μ-law frame %d lost the marker", off/160)
		}
	}

	speech := audiotest.Scale(audiotest.Speech(8000, loopDur, 7), 0.6)
	falseHits := 0
	for off := 0; off+160 <= len(speech); off += 160 {
		if hasMarker(speech[off:off+160], 8000) {
			falseHits++
		}
	}
	if falseHits > 0 {
		t.Errorf("speech alone read as carrying the marker in %d frames", falseHits)
	}
	for name, s := range map[string]transcode.PCM16{
		"silence": audiotest.Silence(8000, frameDur),
		"1 kHz":   audiotest.Tone(8000, 1000, 0.5, frameDur),
		"none":    nil,
	} {
		if hasMarker(s, 8000) {
			t.Errorf("%s read as carrying the marker", name)
		}
	}
}

// TestPingOnsets decodes the pre-encoded Opus microphone: the latency
// ping starts in the frame where it was put (or the next, by the codec's
// delay) and nowhere else, and the marker is still in every frame.
func TestPingOnsets(t *testing.T) {
	opus, err := micOpus()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := transcode.GoOpus().NewDecoder(8000)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 960)
	var onsets []int
	on := false
	for i, p := range opus {
		n, err := dec.Decode(p, pcm)
		if err != nil {
			t.Fatal(err)
		}
		ping := hasPing(pcm[:n], 8000)
		if ping && !on {
			onsets = append(onsets, i)
		}
		on = ping
		if i >= 2 && !hasMarker(pcm[:n], 8000) {
			t.Errorf("frame %d lost the marker", i)
		}
	}
	if want := len(opus) / pingEvery; len(onsets) != want {
		t.Fatalf("ping onsets at frames %v, want %d", onsets, want)
	}
	for _, i := range onsets {
		if i%pingEvery > 1 {
			t.Errorf("ping onset at frame %d, want one of every %d frames (or the next)", i, pingEvery)
		}
	}
	speech := audiotest.Scale(audiotest.Speech(8000, loopDur, 7), 0.6)
	for off := 0; off+160 <= len(speech); off += 160 {
		if hasPing(speech[off:off+160], 8000) {
			t.Fatalf("speech alone read as carrying the ping at frame %d", off/160)
		}
	}
}
