package gateway

import (
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// tapRun drives a tap as a call would for one second: the phone (440 Hz),
// the customer (1 kHz) and the supervisor (2 kHz) each write a 20 ms
// frame per tick, the phone first. It returns what the customer, the
// phone and the supervisor received.
func tapRun(t *testing.T, mode string, customerSilent bool) (web, phone, sup transcode.PCM16) {
	t.Helper()
	clock := time.Unix(0, 0)
	webRec, phoneRec, supRec := audiotest.NewRecorder(8000), audiotest.NewRecorder(8000), audiotest.NewRecorder(8000)
	tap := newCallTap(supRec, func() time.Time { return clock })
	tap.setMode(mode)
	fromPhone, fromCust, fromSup := tap.fromPhone(webRec), tap.fromCustomer(phoneRec), tap.fromSupervisor()
	const frame = 160
	phoneTone := audiotest.Tone(8000, 440, 0.3, time.Second)
	custTone := audiotest.Tone(8000, 1000, 0.3, time.Second)
	supTone := audiotest.Tone(8000, 2000, 0.3, time.Second)
	for i := 0; i+frame <= len(phoneTone); i += frame {
		if err := fromPhone.WriteSample(phoneTone[i : i+frame]); err != nil {
			t.Fatal(err)
		}
		if !customerSilent {
			if err := fromCust.WriteSample(custTone[i : i+frame]); err != nil {
				t.Fatal(err)
			}
		}
		if err := fromSup.WriteSample(supTone[i : i+frame]); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(20 * time.Millisecond)
	}
	return webRec.Samples(), phoneRec.Samples(), supRec.Samples()
}

// heard reports whether freq stands out in pcm: within 12 dB of the
// loudest tone, measured past the first 100 ms.
func heard(pcm transcode.PCM16, freq float64) bool {
	pcm = pcm[min(len(pcm), 800):]
	loudest := -200.0
	for _, f := range []float64{440, 1000, 2000} {
		loudest = max(loudest, audiotest.GoertzelLevel(pcm, 8000, f))
	}
	return audiotest.GoertzelLevel(pcm, 8000, freq) > loudest-12
}

// TestCallTapModes: the supervisor hears both sides in every mode; while
// listening nobody hears the supervisor; whispering only the phone does;
// barging both do. The sides always hear each other.
func TestCallTapModes(t *testing.T) {
	for _, tt := range []struct {
		mode                 string
		phoneHears, custHear bool
	}{
		{monitorListen, false, false},
		{monitorWhisper, true, false},
		{monitorBarge, true, true},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			web, phone, sup := tapRun(t, tt.mode, false)
			if !heard(sup, 440) || !heard(sup, 1000) {
				t.Errorf("the supervisor hears 440 Hz %v, 1 kHz %v; want both sides", heard(sup, 440), heard(sup, 1000))
			}
			if heard(sup, 2000) {
				t.Error("the supervisor hears their own voice")
			}
			if !heard(web, 440) || !heard(phone, 1000) {
				t.Error("the call's sides do not hear each other")
			}
			if got := heard(phone, 2000); got != tt.phoneHears {
				t.Errorf("the phone hears the supervisor: %v, want %v", got, tt.phoneHears)
			}
			if got := heard(web, 2000); got != tt.custHear {
				t.Errorf("the customer hears the supervisor: %v, want %v", got, tt.custHear)
			}
			if heard(web, 1000) || heard(phone, 440) {
				t.Error("a side hears its own voice back")
			}
		})
	}
}

// TestCallTapSilentCustomer: a customer who sends nothing (silence
// suppression) does not keep a whisper from reaching the phone.
func TestCallTapSilentCustomer(t *testing.T) {
	_, phone, sup := tapRun(t, monitorWhisper, true)
	if !heard(phone, 2000) {
		t.Error("the phone does not hear the whisper while the customer is silent")
	}
	if !heard(sup, 440) {
		t.Error("the supervisor does not hear the phone")
	}
}

// TestPCMFIFOBounded: held audio never passes tapHeld samples; the newest
// stays.
func TestPCMFIFOBounded(t *testing.T) {
	var f pcmFIFO
	for i := range 30 {
		s := make(transcode.PCM16, 160)
		for j := range s {
			s[j] = int16(i)
		}
		f.put(s)
	}
	if f.len() != tapHeld {
		t.Fatalf("held %d samples, want %d", f.len(), tapHeld)
	}
	dst := make(transcode.PCM16, 160)
	f.addInto(dst)
	if dst[0] != 20 {
		t.Errorf("oldest held frame is %d, want 20 (the 10 newest frames kept)", dst[0])
	}
	loud := transcode.PCM16{30000}
	f.reset()
	f.put(transcode.PCM16{30000})
	f.addInto(loud)
	if loud[0] != 32767 {
		t.Errorf("mix of two loud samples = %d, want saturated 32767", loud[0])
	}
}
