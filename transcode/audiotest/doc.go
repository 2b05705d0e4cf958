// Package audiotest generates test signals and measures audio for tests of
// the media path: tones and speech-like signals, peak frequency, level in
// dBFS, SNR against a reference, Goertzel power at one frequency, delay by
// cross-correlation, a recording PCM writer, and 16-bit mono WAV files.
//
// Levels are in dBFS relative to a full-scale sine, so a sine of amplitude
// 1.0 (peak 32767) reads 0 dBFS and one of amplitude 0.5 reads -6.02 dBFS,
// with either Level or GoertzelLevel.
//
// A typical assertion on audio that crossed a codec chain:
//
//	sent := audiotest.Tone(8000, 1000, 0.5, time.Second)
//	got := rec.Samples() // from an audiotest.Recorder at the end of the chain
//	if f := audiotest.PeakFrequency(got, 8000); math.Abs(f-1000) > 10 { ... }
//	d := audiotest.Delay(sent, got, 400)
//	if snr := audiotest.SNR(sent, audiotest.Shift(got, d)); snr < 20 { ... }
package audiotest
