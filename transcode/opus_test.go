package transcode_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// opusGeneration encodes 8 kHz PCM with one Opus codec and decodes it with
// another, as one hop between the browser and the gateway does.
func opusGeneration(t *testing.T, enc, dec transcode.OpusCodec, src transcode.PCM16, bitrate int) transcode.PCM16 {
	t.Helper()
	return opusDecode(t, dec, opusEncode(t, enc, src, transcode.OpusConfig{Bitrate: bitrate}), false)
}

// ulawGeneration passes 8 kHz PCM through μ-law and back, as the PBX leg
// does.
func ulawGeneration(t *testing.T, src transcode.PCM16) transcode.PCM16 {
	t.Helper()
	rec := audiotest.NewRecorder(8000)
	dec, err := transcode.NewULawDecoder(rec)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := transcode.NewULawEncoder(dec)
	if err != nil {
		t.Fatal(err)
	}
	writeFrames(t, enc, src, 160)
	return rec.Samples()
}

// TestOpusRoundTripQuality checks the whole voice path of a call, browser
// Opus → 8 kHz PCM → μ-law → PCM → Opus back to the browser, against the
// floor set by the codec itself: the same two Opus generations at the same
// bitrate without G.711 in between, measured here on the same signal. A
// perceptual codec does not keep the waveform, so the floor's SNR is low
// (about 6 dB for speech at 20 kbit/s over two generations) and its
// correlation high (about 0.87); μ-law's own quantisation noise sits about
// 35 dB below the signal, so the chain must stay within 1 dB of SNR and
// 0.01 of correlation of the floor. The absolute floors below are the
// measured values minus a margin, which catches a codec configured badly
// (wrong rate, bandwidth or bitrate) in a way the relative check cannot.
func TestOpusRoundTripQuality(t *testing.T) {
	src := audiotest.Speech(8000, 3*time.Second, 1)
	tests := []struct {
		bitrate         int
		minCorr, minSNR float64 // absolute floors for the codec's own round trip
	}{
		{12000, 0.83, 4.5},
		{20000, 0.84, 5},
		{32000, 0.84, 5},
	}
	for _, codec := range transcode.OpusCodecs() {
		for _, tt := range tests {
			t.Run(codec.Name()+"/"+itoa(tt.bitrate), func(t *testing.T) {
				floor := opusGeneration(t, codec, codec, opusGeneration(t, codec, codec, src, tt.bitrate), tt.bitrate)
				floor = aligned(src, floor)
				chain := opusGeneration(t, codec, codec, ulawGeneration(t, opusGeneration(t, codec, codec, src, tt.bitrate)), tt.bitrate)
				chain = aligned(src, chain)
				fc, fs := audiotest.Correlation(src, floor), audiotest.SNR(src, floor)
				cc, cs := audiotest.Correlation(src, chain), audiotest.SNR(src, chain)
				t.Logf("floor corr %.4f snr %.2f dB; chain corr %.4f snr %.2f dB", fc, fs, cc, cs)
				if fc < tt.minCorr || fs < tt.minSNR {
					t.Errorf("codec floor corr %.3f snr %.2f dB, want at least %.2f and %.1f dB", fc, fs, tt.minCorr, tt.minSNR)
				}
				if cc < fc-0.01 || cs < fs-1 {
					t.Errorf("chain corr %.4f snr %.2f dB, more than 0.01 / 1 dB below the floor %.4f / %.2f dB", cc, cs, fc, fs)
				}
				if d := audiotest.Level(chain) - audiotest.Level(src); math.Abs(d) > 1 {
					t.Errorf("chain changes the level by %.2f dB", d)
				}
			})
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestOpusTone checks frequency and level of a tone through one Opus
// generation at 8 kHz, for each implementation.
func TestOpusTone(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		for _, freq := range []float64{300, 1000, 3000} {
			src := audiotest.Tone(8000, freq, 0.3, time.Second)
			got := opusGeneration(t, codec, codec, src, 20000)[1600:] // skip the codec's start-up
			if f := audiotest.PeakFrequency(got, 8000); math.Abs(f-freq) > 5 {
				t.Errorf("%s: %v Hz tone comes out at %.1f Hz", codec.Name(), freq, f)
			}
			if d := audiotest.GoertzelLevel(got, 8000, freq) - audiotest.Level(src); math.Abs(d) > 1.5 {
				t.Errorf("%s: %v Hz tone level changed by %.2f dB", codec.Name(), freq, d)
			}
		}
	}
}

// TestOpusInterop decodes the packets of every implementation with every
// other: with the libopus tag, gopus packets must decode with libopus and
// the other way round, as a browser's libopus talks to the gateway.
func TestOpusInterop(t *testing.T) {
	src := audiotest.Speech(8000, 2*time.Second, 2)
	codecs := transcode.OpusCodecs()
	for _, enc := range codecs {
		packets := opusEncode(t, enc, src, transcode.OpusConfig{})
		ref := opusDecode(t, enc, packets, false)
		for _, dec := range codecs {
			t.Run(enc.Name()+"->"+dec.Name(), func(t *testing.T) {
				got := opusDecode(t, dec, packets, false)
				if len(got) != len(ref) {
					t.Fatalf("%d samples decoded, %s decoded %d", len(got), enc.Name(), len(ref))
				}
				// Decoders of one bitstream agree almost bit for bit.
				if snr := audiotest.SNR(ref, got); snr < 40 {
					t.Errorf("decoded differs from %s's own decoding: SNR %.1f dB", enc.Name(), snr)
				}
				if c := audiotest.Correlation(src, aligned(src, got)); c < 0.85 {
					t.Errorf("correlation with the source %.3f", c)
				}
			})
		}
	}
}

// TestOpusFEC loses every eighth packet of a stream encoded with in-band
// FEC and checks that recovering the lost frames from the next packet's
// FEC, decoding at 8 kHz, beats plain loss concealment on those frames.
// The stream is encoded from 8 kHz as the gateway does, and from 16 and
// 48 kHz as a browser does, since LBRR data must survive decoding at
// another rate.
func TestOpusFEC(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		for _, rate := range []int{8000, 16000, 48000} {
			t.Run(codec.Name()+"/"+itoa(rate), func(t *testing.T) {
				src := audiotest.Speech(rate, 3*time.Second, 4)
				rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
				enc, err := transcode.NewOpusEncoder(rec, rate, transcode.OpusConfig{Codec: codec, FEC: true, PacketLoss: 20, Bitrate: 24000})
				if err != nil {
					t.Fatal(err)
				}
				writeFrames(t, enc, src, rate/50)
				fecSNR, plcSNR := lossSNR(t, codec, rec.Payloads())
				t.Logf("lost frames against clean decoding: FEC %.2f dB, PLC %.2f dB", fecSNR, plcSNR)
				if fecSNR < plcSNR+3 {
					t.Errorf("FEC recovers lost frames at %.2f dB, PLC at %.2f dB: want FEC 3 dB better", fecSNR, plcSNR)
				}
			})
		}
	}
}

// lossSNR drops every eighth of packets (from the tenth on) and returns
// the mean SNR of the lost frames, against the clean decoding, when the
// decoder rebuilds them from the next packet's FEC and when it conceals
// them (PLC).
func lossSNR(t *testing.T, codec transcode.OpusCodec, packets [][]byte) (fecSNR, plcSNR float64) {
	t.Helper()
	clean := opusDecode(t, codec, packets, false)
	lossy := slices.Clone(packets)
	var lost []int
	for i := 10; i < len(lossy)-1; i += 8 {
		lossy[i] = nil
		lost = append(lost, i)
	}
	withFEC := opusDecode(t, codec, lossy, true)
	plc := opusDecode(t, codec, lossy, false)
	for _, i := range lost {
		ref := clean[i*160 : (i+1)*160]
		fecSNR += audiotest.SNR(ref, withFEC[i*160:(i+1)*160]) / float64(len(lost))
		plcSNR += audiotest.SNR(ref, plc[i*160:(i+1)*160]) / float64(len(lost))
	}
	return fecSNR, plcSNR
}

// TestOpusFECByComplexity runs the gateway's encoder toward browsers (8
// kHz, 20 kbit/s, FEC for 5 % loss) at several complexities: from 2 up,
// a lost frame is recovered from the next packet's FEC well above what
// concealment gives; at 1 neither implementation codes any FEC, so the
// recovered frame is the concealed one (webrtc.opus_complexity says so).
func TestOpusFECByComplexity(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		for _, c := range []int{1, 2, 5, 10} {
			t.Run(codec.Name()+"/"+itoa(c), func(t *testing.T) {
				src := audiotest.Speech(8000, 3*time.Second, 4)
				rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
				enc, err := transcode.NewOpusEncoder(rec, 8000, transcode.OpusConfig{Codec: codec, FEC: true, PacketLoss: 5, Complexity: c})
				if err != nil {
					t.Fatal(err)
				}
				writeFrames(t, enc, src, 160)
				fecSNR, plcSNR := lossSNR(t, codec, rec.Payloads())
				t.Logf("lost frames against clean decoding: FEC %.2f dB, PLC %.2f dB", fecSNR, plcSNR)
				switch {
				case c >= 2 && fecSNR < plcSNR+3:
					t.Errorf("FEC recovers lost frames at %.2f dB, PLC at %.2f dB: want FEC 3 dB better", fecSNR, plcSNR)
				case c == 1 && math.Abs(fecSNR-plcSNR) > 0.5:
					t.Errorf("at complexity 1 FEC gives %.2f dB and PLC %.2f dB: the encoder now codes FEC there; update webrtc.opus_complexity's documentation", fecSNR, plcSNR)
				}
			})
		}
	}
}

// TestOpusDecoderErrors feeds malformed payloads: each returns ErrBadPacket,
// writes nothing, and the decoder goes on decoding good packets.
func TestOpusDecoderErrors(t *testing.T) {
	good := opusEncode(t, transcode.GoOpus(), audiotest.Tone(8000, 500, 0.3, 100*time.Millisecond), transcode.OpusConfig{})
	bad := []struct {
		name string
		p    []byte
	}{
		{"code 3 without frame count", []byte{0x0b}},
		{"code 3 with zero frames", []byte{0x0b, 0x00}},
		{"code 1 with odd length", []byte{0x09, 0x01, 0x02, 0x03}},
		{"code 2 length past the end", []byte{0x0a, 0xff, 0xff}},
		{"over 120 ms", []byte{0x1b, 0x07}},
	}
	for _, codec := range transcode.OpusCodecs() {
		for _, tt := range bad {
			t.Run(codec.Name()+"/"+tt.name, func(t *testing.T) {
				rec := audiotest.NewRecorder(8000)
				dec, err := transcode.NewOpusDecoderCodec(rec, codec)
				if err != nil {
					t.Fatal(err)
				}
				if err := dec.WriteSample(good[0]); err != nil {
					t.Fatal(err)
				}
				err = dec.WriteSample(tt.p)
				if !errors.Is(err, transcode.ErrBadPacket) {
					t.Errorf("err = %v, want ErrBadPacket", err)
				}
				if rec.Frames() != 1 {
					t.Errorf("%d frames written, want only the good one", rec.Frames())
				}
				if err := dec.WriteSample(good[1]); err != nil {
					t.Errorf("good packet after a bad one: %v", err)
				}
			})
		}
	}
}

// panicCodec is an Opus implementation whose coders panic, to test that
// the stages recover.
type panicCodec struct{}

func (panicCodec) Name() string { return "panic" }
func (panicCodec) NewEncoder(int, transcode.OpusConfig) (transcode.OpusFrameEncoder, error) {
	return panicCoder{}, nil
}
func (panicCodec) NewDecoder(int) (transcode.OpusFrameDecoder, error) { return panicCoder{}, nil }

type panicCoder struct{}

func (panicCoder) Encode([]int16, []byte) (int, error)  { panic("encoder bug") }
func (panicCoder) Decode([]byte, []int16) (int, error)  { panic("decoder bug") }
func (panicCoder) Conceal([]byte, []int16) (int, error) { panic("plc bug") }
func (panicCoder) SetEffort(transcode.OpusEffort) error { return nil }

func TestOpusCodecPanicIsRecovered(t *testing.T) {
	dec, err := transcode.NewOpusDecoderCodec(audiotest.NewRecorder(8000), panicCodec{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range [][]byte{{0x08, 1, 2}, nil, {0x08}} {
		if err := dec.WriteSample(p); !errors.Is(err, transcode.ErrCodecPanic) {
			t.Errorf("write %d: err = %v, want ErrCodecPanic", i, err)
		}
	}
	enc, err := transcode.NewOpusEncoder(audiotest.NewPayloadRecorder(transcode.OpusClockRate), 8000, transcode.OpusConfig{Codec: panicCodec{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := enc.WriteSample(make(transcode.PCM16, 160)); !errors.Is(err, transcode.ErrCodecPanic) {
			t.Errorf("encode %d: err = %v, want ErrCodecPanic", i, err)
		}
	}
}

func TestOpusStageConfig(t *testing.T) {
	opusOut := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
	tests := []struct {
		name string
		dst  transcode.BytesWriter
		rate int
		cfg  transcode.OpusConfig
		want error
	}{
		{"defaults", opusOut, 8000, transcode.OpusConfig{}, nil},
		{"48 kHz pcm", opusOut, 48000, transcode.OpusConfig{Frame: 10 * time.Millisecond}, nil},
		{"dst not at the opus clock", audiotest.NewPayloadRecorder(8000), 8000, transcode.OpusConfig{}, transcode.ErrRateMismatch},
		{"44.1 kHz", opusOut, 44100, transcode.OpusConfig{}, transcode.ErrUnsupportedRate},
		{"bitrate", opusOut, 8000, transcode.OpusConfig{Bitrate: 100}, transcode.ErrBadConfig},
		{"complexity", opusOut, 8000, transcode.OpusConfig{Complexity: 11}, transcode.ErrBadConfig},
		{"frame", opusOut, 8000, transcode.OpusConfig{Frame: 30 * time.Millisecond}, transcode.ErrBadConfig},
		{"loss", opusOut, 8000, transcode.OpusConfig{PacketLoss: -1}, transcode.ErrBadConfig},
	}
	for _, codec := range transcode.OpusCodecs() {
		for _, tt := range tests {
			t.Run(codec.Name()+"/"+tt.name, func(t *testing.T) {
				tt.cfg.Codec = codec
				enc, err := transcode.NewOpusEncoder(tt.dst, tt.rate, tt.cfg)
				if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				if err != nil {
					return
				}
				if enc.SampleRate() != tt.rate {
					t.Errorf("SampleRate = %d", enc.SampleRate())
				}
				if !strings.HasPrefix(enc.String(), "Opus(encode "+codec.Name()) || !strings.HasSuffix(enc.String(), "-> PayloadRecorder(48000)") {
					t.Errorf("String = %q", enc.String())
				}
				if err := enc.WriteSample(make(transcode.PCM16, 100)); !errors.Is(err, transcode.ErrFrameSize) {
					t.Errorf("short frame: err = %v, want ErrFrameSize", err)
				}
			})
		}
	}
	if _, err := transcode.NewOpusDecoder(audiotest.NewRecorder(44100)); !errors.Is(err, transcode.ErrUnsupportedRate) {
		t.Errorf("decoder to 44.1 kHz: err = %v", err)
	}
	dec, err := transcode.NewOpusDecoder(audiotest.NewRecorder(8000))
	if err != nil {
		t.Fatal(err)
	}
	if dec.SampleRate() != transcode.OpusClockRate || !strings.HasSuffix(dec.String(), "8000Hz) -> Recorder(8000)") {
		t.Errorf("decoder at %d: %q", dec.SampleRate(), dec.String())
	}
}

func TestOpusDecodeTo48k(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		src := audiotest.Tone(8000, 1000, 0.3, time.Second)
		packets := opusEncode(t, codec, src, transcode.OpusConfig{})
		rec := audiotest.NewRecorder(48000)
		dec, err := transcode.NewOpusDecoderCodec(rec, codec)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range packets {
			if err := dec.WriteSample(p); err != nil {
				t.Fatal(err)
			}
		}
		got := rec.Samples()
		if len(got) != 6*len(src) {
			t.Errorf("%s: %d samples at 48 kHz for %d at 8 kHz", codec.Name(), len(got), len(src))
		}
		if f := audiotest.PeakFrequency(got[9600:], 48000); math.Abs(f-1000) > 5 {
			t.Errorf("%s: peak at %.1f Hz", codec.Name(), f)
		}
	}
}

// TestOpusFullbandDecodedAt8k sends what a browser that ignores
// maxplaybackrate would: full-band Opus encoded from 48 kHz. Decoded
// straight to 8 kHz, the voice-band tone keeps its level and a 6 kHz tone
// does not fold back into the band (it would alias to 2 kHz).
func TestOpusFullbandDecodedAt8k(t *testing.T) {
	for _, enc := range transcode.OpusCodecs() {
		for _, dec := range transcode.OpusCodecs() {
			t.Run(enc.Name()+"->"+dec.Name(), func(t *testing.T) {
				src := audiotest.Tones(48000, 0.25, time.Second, 1000, 6000)
				rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
				e, err := transcode.NewOpusEncoder(rec, 48000, transcode.OpusConfig{Codec: enc, Bitrate: 64000})
				if err != nil {
					t.Fatal(err)
				}
				writeFrames(t, e, src, 960)
				got := opusDecode(t, dec, rec.Payloads(), false)[1600:]
				if l := audiotest.GoertzelLevel(got, 8000, 1000); math.Abs(l+12.04) > 1.5 {
					t.Errorf("1 kHz at %.1f dBFS, want -12", l)
				}
				if l := audiotest.GoertzelLevel(got, 8000, 2000); l > -50 {
					t.Errorf("alias of 6 kHz at 2 kHz: %.1f dBFS, want below -50", l)
				}
			})
		}
	}
}

// TestOpusConcealCounts checks that a lost frame is rebuilt from the
// in-band FEC of the packet after it when that packet carries FEC, and
// extrapolated otherwise, and that ConcealStats counts each frame as one or
// the other.
func TestOpusConcealCounts(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			src := audiotest.Tone(8000, 1000, 0.5, time.Second)
			withFEC := opusEncode(t, codec, src, transcode.OpusConfig{FEC: true, PacketLoss: 10})
			without := opusEncode(t, codec, src, transcode.OpusConfig{})
			rec := audiotest.NewRecorder(8000)
			dec, err := transcode.NewOpusDecoderCodec(rec, codec)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range withFEC[:10] {
				if err := dec.WriteSample(p); err != nil {
					t.Fatal(err)
				}
			}
			steps := []struct {
				name     string
				next     []byte
				fec, plc uint64
			}{
				{"next carries FEC", withFEC[11], 1, 0},
				{"no next packet", nil, 1, 1},
				{"next without FEC", without[13], 1, 2},
				{"next malformed", []byte{0xff, 0xff, 0xff}, 1, 3},
				{"next carries FEC again", withFEC[15], 2, 3},
			}
			for _, s := range steps {
				frames := rec.Frames()
				if err := dec.Conceal(s.next); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if rec.Frames() != frames+1 {
					t.Errorf("%s: %d frames written, want 1", s.name, rec.Frames()-frames)
				}
				if got := dec.ConcealStats(); got.FEC != s.fec || got.PLC != s.plc {
					t.Errorf("%s: %+v, want FEC %d PLC %d", s.name, got, s.fec, s.plc)
				}
			}
			// An empty payload conceals too, as a loss with no next packet.
			if err := dec.WriteSample(nil); err != nil {
				t.Fatal(err)
			}
			if got := dec.ConcealStats(); got.FEC != 2 || got.PLC != 4 {
				t.Errorf("after an empty payload: %+v, want FEC 2 PLC 4", got)
			}
		})
	}
}

// TestOpusHasFEC reads the LBRR flag of packets with and without FEC, of
// a CELT-only packet (never FEC) and of malformed ones.
func TestOpusHasFEC(t *testing.T) {
	src := audiotest.Tone(8000, 1000, 0.5, 200*time.Millisecond)
	for _, codec := range transcode.OpusCodecs() {
		withFEC := opusEncode(t, codec, src, transcode.OpusConfig{FEC: true, PacketLoss: 10})
		without := opusEncode(t, codec, src, transcode.OpusConfig{})
		// The first packet has no frame before it to protect.
		for i, p := range withFEC[1:] {
			if !transcode.OpusHasFEC(p) {
				t.Errorf("%s: packet %d encoded with FEC reads as without", codec.Name(), i+1)
			}
		}
		for i, p := range without {
			if transcode.OpusHasFEC(p) {
				t.Errorf("%s: packet %d encoded without FEC reads as with", codec.Name(), i)
			}
		}
	}
	// TOC config 17 (CELT narrowband, 5 ms), code 0, then a payload whose
	// first bit would be the LBRR flag in SILK.
	for name, p := range map[string][]byte{
		"celt":      {17 << 3, 0xff, 0xff},
		"empty":     nil,
		"toc only":  {0x0b},
		"bad code3": {0x03, 0x00},
	} {
		if transcode.OpusHasFEC(p) {
			t.Errorf("%s packet reads as carrying FEC", name)
		}
	}
}

// TestOpusConcealment loses one packet in ten at random from a stream
// encoded as the test customer sends it (8 kHz, 20 kbit/s, FEC on for 10 %
// loss) and decodes it three ways: with silence in place of each lost
// frame (the decoder never told), with the codec's loss concealment, and
// with FEC from the next packet. It measures each against the clean
// decoding, per lost packet, in frames heard as gaps (audiotest.Dropouts),
// on speech and on the 1 kHz tone that the call tests send, and on the
// tone also in bad frames (audiotest.BadFrames, the end-to-end tests'
// criterion). Concealment must leave under half the dropouts of silence
// on speech and fewer on the tone, and FEC under a third of concealment's
// dropouts and bad frames.
//
// On the tone, concealment leaves more bad frames than silence, in
// libopus as in gopus: its frame comes out some 5 dB low and the frame
// after it lower still, as SILK's long-term predictor carries the
// attenuated extrapolation into the next packet's decoding; silence
// leaves the decoder's state as a steady tone wants it. A steady tone is
// the one signal where that holds; speech recovers at once.
func TestOpusConcealment(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		for _, sig := range []struct {
			name string
			pcm  transcode.PCM16
			// concealed is the most dropouts concealment may leave, as a
			// share of silence's.
			concealed float64
		}{
			{"speech", audiotest.Speech(8000, 20*time.Second, 5), 0.5},
			{"tone", audiotest.Tone(8000, 1000, 0.5, 20*time.Second), 0.9},
		} {
			t.Run(codec.Name()+"/"+sig.name, func(t *testing.T) {
				packets := opusEncode(t, codec, sig.pcm, transcode.OpusConfig{FEC: true, PacketLoss: 10})
				r := rand.New(rand.NewPCG(1, 2))
				lossy := slices.Clone(packets)
				lost := 0
				for i := 50; i < len(lossy)-1; i++ {
					if r.Float64() < 0.1 {
						lossy[i] = nil
						lost++
					}
				}
				clean := opusDecode(t, codec, packets, false)[50*160:]
				none := opusDecodeSilent(t, codec, lossy)[50*160:]
				plc := opusDecode(t, codec, lossy, false)[50*160:]
				fec := opusDecode(t, codec, lossy, true)[50*160:]
				dropouts := func(pcm transcode.PCM16) float64 {
					_, d := audiotest.Dropouts(clean, pcm, 8000)
					return float64(d) / float64(lost)
				}
				dNone, dPLC, dFEC := dropouts(none), dropouts(plc), dropouts(fec)
				t.Logf("%d packets lost of %d; dropouts per lost packet: silence %.2f, concealment %.2f, FEC %.2f", lost, len(packets)-50, dNone, dPLC, dFEC)
				if dPLC > sig.concealed*dNone {
					t.Errorf("concealment leaves %.2f dropouts per lost packet, silence %.2f: want under %.0f %% of that", dPLC, dNone, 100*sig.concealed)
				}
				if dFEC > dPLC/3 {
					t.Errorf("FEC leaves %.2f dropouts per lost packet, concealment alone %.2f: want under a third", dFEC, dPLC)
				}
				if sig.name != "tone" {
					return
				}
				bad := func(pcm transcode.PCM16) float64 {
					_, b, _ := audiotest.BadFrames(pcm, 8000, 1000)
					return float64(b) / float64(lost)
				}
				bNone, bPLC, bFEC := bad(none), bad(plc), bad(fec)
				t.Logf("bad frames per lost packet: silence %.2f, concealment %.2f, FEC %.2f", bNone, bPLC, bFEC)
				if bFEC > bPLC/3 {
					t.Errorf("FEC leaves %.2f bad frames per lost packet, concealment alone %.2f: want under a third", bFEC, bPLC)
				}
			})
		}
	}
}
