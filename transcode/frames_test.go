package transcode_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// frameLog records the length of every frame written to it.
type frameLog struct {
	rate    int
	lengths []int
	all     transcode.PCM16
	err     error
	closed  bool
}

func (f *frameLog) WriteSample(s transcode.PCM16) error {
	f.lengths = append(f.lengths, len(s))
	f.all = append(f.all, s...)
	return f.err
}
func (f *frameLog) SampleRate() int { return f.rate }
func (f *frameLog) String() string  { return "log" }
func (f *frameLog) Close() error    { f.closed = true; return nil }

func TestFrames(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		in      []int // lengths written
		want    []int // lengths out before Close
		padding int   // samples of silence Close adds
	}{
		{"exact", 160, []int{160, 160}, []int{160, 160}, 0},
		{"small in", 160, []int{100, 100, 100, 20}, []int{160, 160}, 0},
		{"big in", 160, []int{480, 10}, []int{160, 160, 160}, 150},
		{"48k to 20 ms", 960, []int{441, 441, 441}, []int{960}, 597},
		{"mixed", 3, []int{1, 5, 2, 4}, []int{3, 3, 3, 3}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &frameLog{rate: 8000}
			w := transcode.Frames(log, tt.size)
			var in transcode.PCM16
			next := int16(1)
			for _, n := range tt.in {
				s := make(transcode.PCM16, n)
				for i := range s {
					s[i] = next
					next++
				}
				in = append(in, s...)
				if err := w.WriteSample(s); err != nil {
					t.Fatal(err)
				}
			}
			if !equalInts(log.lengths, tt.want) {
				t.Errorf("frames %v, want %v", log.lengths, tt.want)
			}
			if err := w.Close(); err != nil || !log.closed {
				t.Fatalf("Close: %v, closed %v", err, log.closed)
			}
			want := append(in, make(transcode.PCM16, tt.padding)...)
			if audiotest.SNR(want, log.all) != audiotestInf || len(log.all) != len(want) {
				t.Errorf("samples out differ from samples in")
			}
		})
	}
	if w := transcode.Frames(&frameLog{rate: 16000}, 320); w.SampleRate() != 16000 || w.String() != "Frames(320) -> log" {
		t.Errorf("rate %d, String %q", w.SampleRate(), w.String())
	}
}

var audiotestInf = audiotest.SNR(transcode.PCM16{1}, transcode.PCM16{1})

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFramesError(t *testing.T) {
	boom := errors.New("boom")
	w := transcode.Frames(&frameLog{rate: 8000, err: boom}, 4)
	if err := w.WriteSample(make(transcode.PCM16, 5)); !errors.Is(err, boom) {
		t.Errorf("err = %v, want the destination's", err)
	}
}

func TestSwitch(t *testing.T) {
	sw := transcode.NewSwitch[transcode.PCM16](8000, "phone-out")
	if sw.String() != "Switch(phone-out) -> none" || sw.SampleRate() != 8000 {
		t.Errorf("empty switch: %q at %d", sw.String(), sw.SampleRate())
	}
	if err := sw.WriteSample(transcode.PCM16{1}); err != nil {
		t.Errorf("write with no target: %v, want nil (dropped)", err)
	}
	a, b := audiotest.NewRecorder(8000), audiotest.NewRecorder(8000)
	if old := sw.Swap(a); old != nil {
		t.Errorf("first Swap returned %v", old)
	}
	if err := sw.WriteSample(transcode.PCM16{2}); err != nil {
		t.Fatal(err)
	}
	if sw.String() != "Switch(phone-out) -> Recorder(8000)" {
		t.Errorf("String %q", sw.String())
	}
	if old := sw.Swap(b); old != transcode.PCMWriter(a) {
		t.Errorf("Swap returned %v, want a", old)
	}
	if err := sw.WriteSample(transcode.PCM16{3}); err != nil {
		t.Fatal(err)
	}
	if len(a.Samples()) != 1 || a.Samples()[0] != 2 || len(b.Samples()) != 1 || b.Samples()[0] != 3 {
		t.Errorf("a got %v, b got %v", a.Samples(), b.Samples())
	}
	if a.Closed() {
		t.Error("Swap closed the old writer; the caller must")
	}
	wide := audiotest.NewRecorder(48000)
	sw.Swap(wide)
	if err := sw.WriteSample(transcode.PCM16{4}); !errors.Is(err, transcode.ErrRateMismatch) {
		t.Errorf("write to a 48 kHz target: %v, want ErrRateMismatch", err)
	}
	sw.Swap(transcode.Resample(wide, 8000))
	if err := sw.WriteSample(make(transcode.PCM16, 160)); err != nil || len(wide.Samples()) == 0 {
		t.Errorf("write through a resampler: %v, %d samples", err, len(wide.Samples()))
	}
	if err := sw.Close(); err != nil || !wide.Closed() {
		t.Errorf("Close: %v, target closed %v", err, wide.Closed())
	}
	if err := sw.WriteSample(transcode.PCM16{5}); err != nil {
		t.Errorf("write after Close: %v, want dropped", err)
	}
}

// TestSwitchConcurrentSwap swaps targets while another goroutine writes;
// run with -race. After Swap returns, the old target gets no more writes,
// so closing it never makes a write fail.
func TestSwitchConcurrentSwap(t *testing.T) {
	sw := transcode.NewSwitch[transcode.PCM16](8000, "x")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		frame := make(transcode.PCM16, 160)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := sw.WriteSample(frame); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
		}
	}()
	for range 200 {
		if old := sw.Swap(audiotest.NewRecorder(8000)); old != nil {
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Errorf("a write reached a closed target: %v", err)
	default:
	}
}
