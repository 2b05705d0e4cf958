package transcode_test

import (
	"testing"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// writeFrames writes src to w in frames of n samples (the last one may be
// shorter) and fails the test on the first error.
func writeFrames(t testing.TB, w transcode.PCMWriter, src transcode.PCM16, n int) {
	t.Helper()
	for i := 0; i < len(src); i += n {
		if err := w.WriteSample(src[i:min(i+n, len(src))]); err != nil {
			t.Fatalf("write frame at %d to %s: %v", i, w, err)
		}
	}
}

// opusEncode encodes 8 kHz src in 20 ms frames with codec and returns the
// packets.
func opusEncode(t testing.TB, codec transcode.OpusCodec, src transcode.PCM16, cfg transcode.OpusConfig) [][]byte {
	t.Helper()
	rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
	cfg.Codec = codec
	enc, err := transcode.NewOpusEncoder(rec, 8000, cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFrames(t, enc, src[:len(src)/160*160], 160)
	return rec.Payloads()
}

// opusDecode decodes packets with codec to 8 kHz; a nil packet is lost and
// concealed (with FEC from the next packet when fec is set).
func opusDecode(t testing.TB, codec transcode.OpusCodec, packets [][]byte, fec bool) transcode.PCM16 {
	t.Helper()
	return opusDecodeWith(t, codec, packets, func(dec *transcode.OpusDecoder, _ *audiotest.Recorder, i int) error {
		var next []byte
		if fec && i+1 < len(packets) {
			next = packets[i+1]
		}
		return dec.Conceal(next)
	})
}

// opusDecodeSilent decodes packets with codec to 8 kHz and writes a frame
// of silence for each lost (nil) one, without telling the decoder.
func opusDecodeSilent(t testing.TB, codec transcode.OpusCodec, packets [][]byte) transcode.PCM16 {
	t.Helper()
	return opusDecodeWith(t, codec, packets, func(_ *transcode.OpusDecoder, rec *audiotest.Recorder, _ int) error {
		return rec.WriteSample(make(transcode.PCM16, 160))
	})
}

// opusDecodeWith decodes packets with codec to 8 kHz into a recorder and
// calls lost for each nil packet (the i-th).
func opusDecodeWith(t testing.TB, codec transcode.OpusCodec, packets [][]byte, lost func(dec *transcode.OpusDecoder, rec *audiotest.Recorder, i int) error) transcode.PCM16 {
	t.Helper()
	rec := audiotest.NewRecorder(8000)
	dec, err := transcode.NewOpusDecoderCodec(rec, codec)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range packets {
		if p == nil {
			err = lost(dec, rec, i)
		} else {
			err = dec.WriteSample(p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return rec.Samples()
}

// aligned returns got advanced by its delay against ref (searched up to
// 50 ms at 8 kHz).
func aligned(ref, got transcode.PCM16) transcode.PCM16 {
	return audiotest.Shift(got, audiotest.Delay(ref, got, 400))
}
