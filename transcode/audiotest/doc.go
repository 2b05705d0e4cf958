// Package audiotest generates test signals and measures audio for tests of
// the media path.
//
//   - Signals: Tone, Tones (DTMF pairs, dial tone), Speech (speech-like,
//     deterministic from a seed), Noise, Silence, and Mix, Concat, Scale.
//   - Measures: PeakFrequency, Level (dBFS), GoertzelLevel and
//     GoertzelPower at one frequency, SNR and Correlation against a
//     reference, Delay by cross-correlation with Shift to line signals up,
//     WindowedCorrelation for chains whose delay moves, and
//     BarkDistortion, a loudness-spectrum distance that a perceptual codec
//     does not lose on by leaving the waveform; BadFrames (a steady tone's
//     damaged frames) and Dropouts (frames heard as gaps against a clean
//     reference) to measure loss and its concealment.
//   - Sinks: Recorder (PCM) and PayloadRecorder (G.711 or Opus payloads)
//     to put at the end of a chain under test.
//   - Files: ReadWAV and WriteWAV for 16-bit mono PCM WAV.
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
