package recording_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thesyncim/gopus/container/ogg"

	"github.com/segue-rtc/segue/recording"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

const frame = recording.Rate / 50

// record feeds left and right frame by frame, one tick per frame, into a
// new recording in a temp file and returns the file's path.
func record(t *testing.T, format string, left, right transcode.PCM16, close bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec"+recording.Ext(format))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := recording.New(f, recording.Options{Format: format, Comments: []string{"CALL=k_1"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+frame <= max(len(left), len(right)); i += frame {
		if i+frame <= len(left) {
			_ = r.Left().WriteSample(left[i : i+frame])
		}
		if i+frame <= len(right) {
			_ = r.Right().WriteSample(right[i : i+frame])
		}
		if err := r.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	if close {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Tick(); !errors.Is(err, recording.ErrClosed) {
			t.Errorf("tick after close: %v", err)
		}
	}
	return path
}

func read(t *testing.T, path string) (left, right transcode.PCM16) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	left, right, err = recording.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return left, right
}

func checkTone(t *testing.T, what string, pcm transcode.PCM16, want, other float64) {
	t.Helper()
	mid := pcm[len(pcm)/4 : len(pcm)*3/4]
	if f := audiotest.PeakFrequency(mid, recording.Rate); math.Abs(f-want) > 10 {
		t.Errorf("%s: peak %.0f Hz, want %.0f", what, f, want)
	}
	if l := audiotest.Level(mid); l < -10 || l > -4 {
		t.Errorf("%s: level %.1f dBFS, want about -6", what, l)
	}
	if x := audiotest.GoertzelLevel(mid, recording.Rate, other) - audiotest.Level(mid); x > -25 {
		t.Errorf("%s: the other channel's %.0f Hz at %.1f dB", what, other, x)
	}
}

// TestOggStereo records the customer's 1 kHz on the left and the phone's
// 440 Hz on the right and reads them back apart, with the duration fed
// (less the 60 ms the channels buffer before they play out).
func TestOggStereo(t *testing.T) {
	left := audiotest.Tone(recording.Rate, 1000, 0.5, 3*time.Second)
	right := audiotest.Tone(recording.Rate, 440, 0.5, 3*time.Second)
	path := record(t, recording.FormatOgg, left, right, true)
	l, r := read(t, path)
	if d := time.Duration(len(l)) * time.Second / recording.Rate; d < 2900*time.Millisecond || d > 3*time.Second {
		t.Errorf("recording lasts %v, want 3s less the priming", d)
	}
	checkTone(t, "left", l, 1000, 440)
	checkTone(t, "right", r, 440, 1000)

	// Another Ogg implementation reads the same stream: the headers, one
	// packet per 20 ms and the final granule position.
	data, _ := os.ReadFile(path)
	or, err := ogg.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("gopus ogg reader: %v", err)
	}
	if or.Header.Channels != 2 || or.Header.SampleRate != recording.Rate {
		t.Errorf("OpusHead: %+v", or.Header)
	}
	var packets int
	var granule uint64
	for {
		_, g, err := or.ReadPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("gopus ogg reader: %v", err)
		}
		packets, granule = packets+1, g
	}
	if packets != 150 || granule != 150*960 {
		t.Errorf("gopus read %d packets up to granule %d, want 150 and %d", packets, granule, 150*960)
	}
	// About a page a second, not a page per packet.
	if pages := bytes.Count(data, []byte("OggS")); pages > 8 {
		t.Errorf("%d pages for 3 s", pages)
	}
}

// TestOggCrash: a recording never closed (the process died) still reads
// up to its last flush, a second at most before the end.
func TestOggCrash(t *testing.T) {
	left := audiotest.Tone(recording.Rate, 1000, 0.5, 2500*time.Millisecond)
	right := audiotest.Tone(recording.Rate, 440, 0.5, 2500*time.Millisecond)
	path := record(t, recording.FormatOgg, left, right, false)
	l, r := read(t, path)
	if d := time.Duration(len(l)) * time.Second / recording.Rate; d < 1900*time.Millisecond || d > 2*time.Second {
		t.Errorf("the unclosed recording reads %v, want the 2 s flushed", d)
	}
	checkTone(t, "left", l, 1000, 440)
	checkTone(t, "right", r, 440, 1000)
}

// TestWAVStereo: the WAV form holds the samples themselves, delayed by the
// priming (a channel fed a frame per tick plays out from its third frame,
// two frames late), and its header is right after every flush.
func TestWAVStereo(t *testing.T) {
	left := audiotest.Tone(recording.Rate, 1000, 0.5, 1500*time.Millisecond)
	right := audiotest.Tone(recording.Rate, 440, 0.5, 1500*time.Millisecond)
	unclosed := record(t, recording.FormatWAV, left, right, false)
	if l, _ := read(t, unclosed); len(l) != recording.Rate {
		t.Errorf("unclosed WAV holds %d samples, want the %d flushed", len(l), recording.Rate)
	}
	l, r := read(t, record(t, recording.FormatWAV, left, right, true))
	if len(l) != len(left) {
		t.Fatalf("WAV holds %d samples, want %d", len(l), len(left))
	}
	prime := 2 * frame
	for i := range l {
		wl, wr := int16(0), int16(0)
		if i >= prime {
			wl, wr = left[i-prime], right[i-prime]
		}
		if l[i] != wl || r[i] != wr {
			t.Fatalf("sample %d: got %d/%d, want %d/%d", i, l[i], r[i], wl, wr)
		}
	}
	pcm, rate, err := audiotest.ReadWAVFile(unclosed)
	if err == nil && rate != recording.Rate {
		t.Errorf("WAV rate %d (%d samples)", rate, len(pcm))
	}
}

// TestChannelsKeepTheirOwnPace: a leg that delivers in bursts loses no
// audio, a silent leg records silence, and one that runs far ahead of
// the clock keeps only its latest audio.
func TestChannelsKeepTheirOwnPace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := recording.New(f, recording.Options{Format: recording.FormatWAV})
	if err != nil {
		t.Fatal(err)
	}
	tone := audiotest.Tone(recording.Rate, 1000, 0.5, 2*time.Second)
	// Bursts of three frames every third tick.
	for i := 0; i < len(tone)/frame; i++ {
		if i%3 == 0 && (i+3)*frame <= len(tone) {
			_ = r.Left().WriteSample(tone[i*frame : (i+3)*frame])
		}
		if err := r.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	// Far ahead: ten seconds at once on the right.
	_ = r.Right().WriteSample(audiotest.Tone(recording.Rate, 440, 0.5, 10*time.Second))
	for range 50 {
		_ = r.Tick()
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := r.Duration(); d != 3*time.Second {
		t.Errorf("duration %v, want 3s", d)
	}
	l, rt := read(t, path)
	// The 100th frame never came (its burst would overrun the tone).
	burst := l[:99*frame]
	var gaps int
	for i := 0; i+frame <= len(burst); i += frame {
		if audiotest.Level(burst[i:i+frame]) < -40 {
			gaps++
		}
	}
	if gaps != 0 {
		t.Errorf("%d silent frames in the bursty channel", gaps)
	}
	if lv := audiotest.Level(rt[:2*recording.Rate]); lv > -90 {
		t.Errorf("the right channel had nothing for 2 s but recorded %.1f dBFS", lv)
	}
	ahead := rt[2*recording.Rate:]
	var played int
	for i := 0; i+frame <= len(ahead); i += frame {
		if audiotest.Level(ahead[i:i+frame]) > -10 {
			played++
		}
	}
	if played != recording.Rate/5/frame {
		t.Errorf("the channel that ran ahead played %d frames, want the %d kept", played, recording.Rate/5/frame)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := recording.New(nil, recording.Options{Format: "mp3"}); !errors.Is(err, recording.ErrFormat) {
		t.Errorf("mp3: %v", err)
	}
	for _, data := range [][]byte{nil, []byte("hello"), []byte("RIFF1234WAVEfmt "), append([]byte("OggS"), make([]byte, 40)...)} {
		if _, _, err := recording.Read(bytes.NewReader(data)); err == nil {
			t.Errorf("%q read without error", data)
		}
	}
}
