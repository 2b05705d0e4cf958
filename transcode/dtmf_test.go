package transcode_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestDTMFEventMarshal(t *testing.T) {
	tests := []struct {
		name string
		ev   transcode.DTMFEvent
		wire [4]byte
	}{
		// RFC 4733 §2.3, Figure 1: event, E|R|volume, duration.
		{"start of 5", transcode.DTMFEvent{Event: 5, Volume: 10, Duration: 160}, [4]byte{5, 0x0a, 0x00, 0xa0}},
		{"end of #", transcode.DTMFEvent{Event: 11, End: true, Volume: 63, Duration: 0xffff}, [4]byte{11, 0xbf, 0xff, 0xff}},
		{"zero", transcode.DTMFEvent{}, [4]byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.Marshal(); got != tt.wire {
				t.Errorf("Marshal = %x, want %x", got, tt.wire)
			}
			ev, err := transcode.ParseDTMFEvent(tt.wire[:])
			if err != nil || ev != tt.ev {
				t.Errorf("Parse = %+v, %v; want %+v", ev, err, tt.ev)
			}
		})
	}
	// The R bit is ignored (§2.3.3), extra bytes too.
	if ev, err := transcode.ParseDTMFEvent([]byte{1, 0x40 | 7, 0, 1, 9, 9}); err != nil || ev != (transcode.DTMFEvent{Event: 1, Volume: 7, Duration: 1}) {
		t.Errorf("with R bit: %+v, %v", ev, err)
	}
	if _, err := transcode.ParseDTMFEvent([]byte{1, 2, 3}); !errors.Is(err, transcode.ErrBadPacket) {
		t.Errorf("short payload: %v", err)
	}
}

func TestDTMFCodes(t *testing.T) {
	for i, d := range "0123456789*#ABCD" {
		code, err := transcode.DTMFCode(d)
		if err != nil || int(code) != i {
			t.Errorf("DTMFCode(%q) = %d, %v; want %d", d, code, err, i)
		}
		back, err := transcode.DTMFDigit(code)
		if err != nil || back != d {
			t.Errorf("DTMFDigit(%d) = %q, %v", code, back, err)
		}
	}
	if c, err := transcode.DTMFCode('b'); err != nil || c != 13 {
		t.Errorf("lower-case b: %d, %v", c, err)
	}
	for _, d := range []rune{'E', 'x', ' ', '+'} {
		if _, err := transcode.DTMFCode(d); !errors.Is(err, transcode.ErrUnknownDigit) {
			t.Errorf("DTMFCode(%q): %v", d, err)
		}
	}
	if _, err := transcode.DTMFDigit(16); !errors.Is(err, transcode.ErrUnknownDigit) {
		t.Errorf("DTMFDigit(16): %v", err)
	}
}

// drain collects every packet the sender yields for one digit.
func drain(s *transcode.DTMFSender) []transcode.DTMFPacket {
	var out []transcode.DTMFPacket
	for {
		p, ok := s.Next()
		if !ok {
			return out
		}
		out = append(out, p)
	}
}

func TestDTMFSender(t *testing.T) {
	s, err := transcode.NewDTMFSender(8000, 20*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Next(); ok || s.Busy() {
		t.Fatal("idle sender yields a packet")
	}
	if err := s.Start('7', 100*time.Millisecond, 5000); err != nil {
		t.Fatal(err)
	}
	if err := s.Start('1', 100*time.Millisecond, 6000); !errors.Is(err, transcode.ErrBusy) {
		t.Errorf("second Start: %v, want ErrBusy", err)
	}
	got := drain(s)
	// 100 ms in 20 ms steps: 5 packets with growing duration, the first
	// with the marker (§2.5.1.2), then the end packet three times (§2.5.1.4),
	// all with the event's timestamp.
	wantDur := []uint16{160, 320, 480, 640, 800, 800, 800, 800}
	if len(got) != len(wantDur) {
		t.Fatalf("%d packets, want %d: %+v", len(got), len(wantDur), got)
	}
	for i, p := range got {
		end := i >= 5
		if p.Timestamp != 5000 || p.Event.Duration != wantDur[i] || p.Event.End != end || p.Marker != (i == 0) || p.Event.Event != 7 || p.Event.Volume != 10 {
			t.Errorf("packet %d = %+v", i, p)
		}
		if pl := p.Payload(); pl[0] != 7 || (pl[1]&0x80 != 0) != end {
			t.Errorf("packet %d payload %x", i, pl)
		}
	}
	if s.Busy() {
		t.Error("still busy after the end packets")
	}
	// A short press still lasts one interval.
	if err := s.Start('#', time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	if got := drain(s); len(got) != 4 || got[0].Event.Duration != 160 {
		t.Errorf("short press: %+v", got)
	}
	if err := s.Start('X', time.Second, 0); !errors.Is(err, transcode.ErrUnknownDigit) {
		t.Errorf("bad digit: %v", err)
	}
}

// TestDTMFSenderLongEvent checks the §2.5.1.3 segmentation at a 48 kHz
// clock, where the 16-bit duration overflows after 1.37 s.
func TestDTMFSenderLongEvent(t *testing.T) {
	s, err := transcode.NewDTMFSender(48000, 20*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start('0', 2*time.Second, 0xfffff000); err != nil {
		t.Fatal(err)
	}
	got := drain(s)
	if len(got) != 100+3 {
		t.Fatalf("%d packets, want 103", len(got))
	}
	var stamps []uint32
	for i, p := range got {
		if !slices.Contains(stamps, p.Timestamp) {
			stamps = append(stamps, p.Timestamp)
		}
		if p.Marker != (i == 0) {
			t.Errorf("packet %d marker %v", i, p.Marker)
		}
	}
	if want := []uint32{0xfffff000, 0xffff - 0x1000}; !slices.Equal(stamps, want) {
		t.Errorf("segment timestamps %x, want %x", stamps, want)
	}
	last := got[len(got)-1].Event
	if !last.End || uint32(last.Duration)+0xffff != 96000 {
		t.Errorf("last packet %+v, want the end at 96000 units in total", last)
	}
}

func TestDTMFSenderConfig(t *testing.T) {
	for _, tt := range []struct {
		rate   int
		iv     time.Duration
		volume int
	}{{0, 20 * time.Millisecond, 10}, {8000, 0, 10}, {8000, 20 * time.Millisecond, 64}, {8000, 20 * time.Millisecond, -1}} {
		if _, err := transcode.NewDTMFSender(tt.rate, tt.iv, tt.volume); !errors.Is(err, transcode.ErrBadConfig) {
			t.Errorf("%+v: %v", tt, err)
		}
	}
}

// TestDTMFSendReceive passes the sender's packets, with duplicates, to a
// receiver: each digit comes out once.
func TestDTMFSendReceive(t *testing.T) {
	s, err := transcode.NewDTMFSender(8000, 20*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	var r transcode.DTMFReceiver
	var digits []rune
	ts := uint32(1000)
	for _, d := range "1#9*0D55" {
		if err := s.Start(d, 80*time.Millisecond, ts); err != nil {
			t.Fatal(err)
		}
		for _, p := range drain(s) {
			pl := p.Payload()
			for range 2 { // every packet twice, as a retransmitting network would
				got, ok, err := r.Receive(p.Timestamp, pl[:])
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					digits = append(digits, got)
				}
			}
		}
		ts += 1600
	}
	if string(digits) != "1#9*0D55" {
		t.Errorf("received %q", string(digits))
	}
	if _, _, err := r.Receive(0, []byte{1}); !errors.Is(err, transcode.ErrBadPacket) {
		t.Errorf("short payload: %v", err)
	}
	if _, ok, err := r.Receive(99, []byte{40, 0, 0, 0}); ok || err != nil {
		t.Errorf("non-DTMF event reported: %v %v", ok, err)
	}
}

// detect runs pcm through a fresh detector in 20 ms frames.
func detect(t *testing.T, rate int, pcm transcode.PCM16) string {
	t.Helper()
	d, err := transcode.NewDTMFDetector(rate)
	if err != nil {
		t.Fatal(err)
	}
	var digits []rune
	for i := 0; i < len(pcm); i += rate / 50 {
		digits = d.Detect(pcm[i:min(i+rate/50, len(pcm))], digits)
	}
	return string(digits)
}

// keyed returns the in-band tones of digits, each on for on and off for
// off, at rate.
func keyed(t *testing.T, rate int, digits string, on, off time.Duration, amp float64) transcode.PCM16 {
	t.Helper()
	var out transcode.PCM16
	for _, d := range digits {
		tone := make(transcode.PCM16, audiotest.Samples(rate, on))
		// Generate in 20 ms pieces to exercise the offset.
		for i := 0; i < len(tone); i += rate / 50 {
			if err := transcode.DTMFTone(tone[i:min(i+rate/50, len(tone))], rate, d, amp, i); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, tone...)
		out = append(out, audiotest.Silence(rate, off)...)
	}
	return out
}

func TestDTMFToneDetection(t *testing.T) {
	all := "123A456B789C*0#D"
	tests := []struct {
		name string
		rate int
		pcm  func(t *testing.T) transcode.PCM16
		want string
	}{
		{"all digits 8 kHz", 8000, func(t *testing.T) transcode.PCM16 {
			return keyed(t, 8000, all, 70*time.Millisecond, 50*time.Millisecond, 0.25)
		}, all},
		{"all digits 48 kHz", 48000, func(t *testing.T) transcode.PCM16 {
			return keyed(t, 48000, all, 70*time.Millisecond, 50*time.Millisecond, 0.25)
		}, all},
		{"repeated digit", 8000, func(t *testing.T) transcode.PCM16 {
			return keyed(t, 8000, "5555", 60*time.Millisecond, 60*time.Millisecond, 0.25)
		}, "5555"},
		{"long press once", 8000, func(t *testing.T) transcode.PCM16 { return keyed(t, 8000, "9", 2*time.Second, 0, 0.25) }, "9"},
		{"quiet tones -36 dBFS", 8000, func(t *testing.T) transcode.PCM16 {
			return keyed(t, 8000, "07", 80*time.Millisecond, 60*time.Millisecond, 0.016)
		}, "07"},
		{"too short", 8000, func(t *testing.T) transcode.PCM16 {
			return keyed(t, 8000, "3", 20*time.Millisecond, 100*time.Millisecond, 0.25)
		}, ""},
		{"speech", 8000, func(*testing.T) transcode.PCM16 { return audiotest.Speech(8000, 5*time.Second, 11) }, ""},
		{"single tone", 8000, func(*testing.T) transcode.PCM16 { return audiotest.Tone(8000, 770, 0.3, time.Second) }, ""},
		{"white noise", 8000, func(*testing.T) transcode.PCM16 { return audiotest.Noise(8000, -15, 3*time.Second, 3) }, ""},
		{"tones in noise", 8000, func(t *testing.T) transcode.PCM16 {
			keys := keyed(t, 8000, "369#", 80*time.Millisecond, 80*time.Millisecond, 0.2)
			return audiotest.Mix(keys, audiotest.Noise(8000, -30, time.Second, 4))
		}, "369#"},
		{"dial tone", 8000, func(*testing.T) transcode.PCM16 { return audiotest.Tones(8000, 0.2, time.Second, 350, 440) }, ""},
		{"through mu-law", 8000, func(t *testing.T) transcode.PCM16 {
			return ulawGeneration(t, keyed(t, 8000, "2580", 60*time.Millisecond, 60*time.Millisecond, 0.2))
		}, "2580"},
		{"through Opus", 8000, func(t *testing.T) transcode.PCM16 {
			src := keyed(t, 8000, "147*", 100*time.Millisecond, 100*time.Millisecond, 0.2)
			return opusGeneration(t, transcode.GoOpus(), transcode.GoOpus(), src, 24000)
		}, "147*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := detect(t, tt.rate, tt.pcm(t)); got != tt.want {
				t.Errorf("detected %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := transcode.NewDTMFDetector(4000); !errors.Is(err, transcode.ErrUnsupportedRate) {
		t.Errorf("4 kHz detector: %v", err)
	}
	if err := transcode.DTMFTone(make(transcode.PCM16, 10), 8000, 'Z', 0.2, 0); !errors.Is(err, transcode.ErrUnknownDigit) {
		t.Errorf("tone for Z: %v", err)
	}
}

func TestDTMFToneFrequencies(t *testing.T) {
	tone := keyed(t, 8000, "6", time.Second, 0, 0.25)
	for _, f := range []float64{770, 1477} {
		if l := audiotest.GoertzelLevel(tone, 8000, f); l < -12.5 || l > -11.5 {
			t.Errorf("level at %v Hz %.2f dBFS, want -12.04", f, l)
		}
	}
	for _, f := range []float64{697, 1336} {
		if l := audiotest.GoertzelLevel(tone, 8000, f); l > -60 {
			t.Errorf("level at %v Hz %.2f dBFS, want nothing", f, l)
		}
	}
}
