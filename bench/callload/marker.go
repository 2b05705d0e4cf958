package main

import (
	"fmt"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// The customers' microphone plays speech-like audio with a steady marker
// tone under it. The marker tells the audio that made the whole trip
// (customer → gateway → phone echo → gateway → customer) from silence,
// concealment or anything else the gateway might produce in its place:
// a returned 20 ms frame is good when the marker is in it.
const (
	// markerHz is the marker's frequency: a whole number of cycles in
	// 20 ms (28), so that frames join without a phase jump and the
	// pre-encoded loop repeats seamlessly; away from the speech signal's
	// formants, inside G.711's and narrowband Opus's band.
	markerHz = 1400
	// markerAmp is the marker's amplitude (-12 dBFS).
	markerAmp = 0.25
	// markerFloorDB is the level, in dBFS at markerHz, above which a frame
	// carries the marker: 10 dB under what was sent, which two G.711 and
	// two Opus codings at speech bitrates keep well within.
	markerFloorDB = -22
	// frameDur is the duration of one RTP packet both ways.
	frameDur = 20 * time.Millisecond
	// loopDur is the length of the pre-encoded microphone loop.
	loopDur = 10 * time.Second

	// pingHz is the latency ping's frequency: bursts of it at known
	// frames of the loop time the round trip by their onset. 40 whole
	// cycles in 20 ms, so that it and the marker do not leak into each
	// other's Goertzel filter, inside both codecs' band.
	pingHz = 2000
	// pingAmp is the ping's amplitude (-12 dBFS).
	pingAmp = 0.25
	// pingEvery is the number of frames from one ping's onset to the
	// next (2 s): a round trip longer than that cannot be told from the
	// next ping and is not measured.
	pingEvery = 100
	// pingFrames is the length of one ping in frames (60 ms).
	pingFrames = 3
)

// isPingStart reports whether frame i of the loop starts a ping.
func isPingStart(i int) bool { return i%pingEvery == 0 }

// micSignal returns the customers' microphone at rate: speech-like audio
// (peak -10 dBFS) with the marker tone mixed in and the latency ping's
// bursts, lasting loopDur.
func micSignal(rate int) transcode.PCM16 {
	return audiotest.Mix(
		audiotest.Scale(audiotest.Speech(rate, loopDur, 7), 0.6),
		audiotest.Tone(rate, markerHz, markerAmp, loopDur),
		pings(rate),
	)
}

// pings returns the ping bursts of the loop at rate: pingFrames frames of
// pingHz from every frame where isPingStart holds, silence between.
func pings(rate int) transcode.PCM16 {
	out := audiotest.Tone(rate, pingHz, pingAmp, loopDur)
	n := audiotest.Samples(rate, frameDur)
	for i := range len(out) / n {
		if i%pingEvery >= pingFrames {
			clear(out[i*n : (i+1)*n])
		}
	}
	return out
}

// hasMarker reports whether pcm, one frame at rate, carries the marker.
func hasMarker(pcm []int16, rate int) bool {
	return len(pcm) > 0 && audiotest.GoertzelLevel(pcm, rate, markerHz) >= markerFloorDB
}

// hasPing reports whether pcm, one frame at rate, carries the ping.
func hasPing(pcm []int16, rate int) bool {
	return len(pcm) > 0 && audiotest.GoertzelLevel(pcm, rate, pingHz) >= markerFloorDB
}

// packets collects what an encoder stage writes, one payload per frame.
type packets struct {
	out  [][]byte
	rate int
}

func (p *packets) WriteSample(b []byte) error {
	p.out = append(p.out, append([]byte(nil), b...))
	return nil
}
func (p *packets) SampleRate() int { return p.rate }
func (p *packets) String() string  { return "packets" }
func (p *packets) Close() error    { return nil }

// micOpus encodes the microphone loop once, as a browser would send it:
// Opus at 48 kHz, 20 ms packets, 32 kbit/s.
func micOpus() ([][]byte, error) {
	p := &packets{rate: transcode.OpusClockRate}
	enc, err := transcode.NewOpusEncoder(p, 48000, transcode.OpusConfig{Bitrate: 32000})
	if err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	return encodeFrames(enc, micSignal(48000), 960, p)
}

// micOpusNarrow encodes the microphone loop as a browser does for a peer
// that asked for narrowband (maxplaybackrate=8000): Opus coding 8 kHz
// audio, 20 ms packets, the same 32 kbit/s target.
func micOpusNarrow() ([][]byte, error) {
	p := &packets{rate: transcode.OpusClockRate}
	enc, err := transcode.NewOpusEncoder(p, 8000, transcode.OpusConfig{Bitrate: 32000})
	if err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	return encodeFrames(enc, micSignal(8000), 160, p)
}

// micPCMU encodes the microphone loop once as G.711 μ-law, 20 ms packets,
// for customers that offer PCMU only (no transcoding in the gateway).
func micPCMU() ([][]byte, error) {
	p := &packets{rate: 8000}
	enc, err := transcode.NewULawEncoder(p)
	if err != nil {
		return nil, err
	}
	return encodeFrames(enc, micSignal(8000), 160, p)
}

func encodeFrames(enc transcode.PCMWriter, pcm transcode.PCM16, n int, p *packets) ([][]byte, error) {
	for off := 0; off+n <= len(pcm); off += n {
		if err := enc.WriteSample(pcm[off : off+n]); err != nil {
			return nil, err
		}
	}
	return p.out, nil
}
