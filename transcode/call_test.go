package transcode_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestCallPathUnderLoss runs the browser-to-phone direction of a call as a
// leg wires it: Opus RTP packets with in-band FEC cross a network with
// random delay and loss into a jitter buffer, and a 20 ms tick pops them
// into Opus decode → μ-law encode; the phone's μ-law decode is recorded.
// The audio must come out whole (one frame per tick once playing), in
// time (the delay within the jitter buffer's maximum plus the codec's),
// and close to the source: window by window (the buffer's delay moves as
// it adapts), the correlation must stay within 0.1 of the same path
// without loss and jitter, measured in the same run.
func TestCallPathUnderLoss(t *testing.T) {
	src := audiotest.Speech(8000, 4*time.Second, 21)
	for _, codec := range transcode.OpusCodecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			packets := opusEncode(t, codec, src, transcode.OpusConfig{FEC: true, PacketLoss: 10})
			clean, _ := runCallPath(t, codec, packets, 0, 0)
			lossy, stats := runCallPath(t, codec, packets, 0.05, 40*time.Millisecond)
			cc := audiotest.WindowedCorrelation(src, clean, 2000, 8*140)
			lc := audiotest.WindowedCorrelation(src, lossy, 2000, 8*140)
			d := audiotest.Delay(src, lossy, 8*200)
			t.Logf("correlation clean %.3f, with 5%% loss and 40 ms jitter %.3f; delay %d samples; %+v", cc, lc, d, stats)
			if lc < cc-0.1 {
				t.Errorf("correlation %.3f under loss, more than 0.1 below %.3f", lc, cc)
			}
			if d > 8*(120+10) {
				t.Errorf("delay %d samples, above 120 ms of jitter buffer and the codec's 6.5 ms", d)
			}
			if len(lossy) < len(src)-8*200 {
				t.Errorf("%d samples out for %d in", len(lossy), len(src))
			}
			if stats.Lost == 0 || stats.Played == 0 {
				t.Errorf("stats %+v: want losses and played packets", stats)
			}
		})
	}
}

// runCallPath sends packets through a simulated network into the receive
// path and returns the phone's decoded audio and the jitter statistics.
func runCallPath(t *testing.T, codec transcode.OpusCodec, packets [][]byte, loss float64, spread time.Duration) (transcode.PCM16, transcode.JitterStats) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	phone := audiotest.NewRecorder(8000)
	ulawDec, err := transcode.NewULawDecoder(phone)
	if err != nil {
		t.Fatal(err)
	}
	ulawEnc, err := transcode.NewULawEncoder(&relay{dst: ulawDec})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := transcode.NewOpusDecoderCodec(ulawEnc, codec)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	start := clock.t
	jb, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: transcode.OpusClockRate, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	var arr []arrival
	for i, p := range packets {
		if rng.Float64() < loss {
			continue
		}
		at := time.Duration(i)*frame + time.Duration(rng.Int64N(int64(spread)+1))
		arr = append(arr, arrival{at: at, p: &rtp.Packet{
			Header:  rtp.Header{SSRC: 9, SequenceNumber: uint16(40000 + i), Timestamp: uint32(960 * i)},
			Payload: p,
		}})
	}
	slices.SortStableFunc(arr, func(a, b arrival) int { return int(a.at - b.at) })
	k := 0
	end := time.Duration(len(packets))*frame + 200*time.Millisecond
	for tick := 5 * time.Millisecond; tick < end; tick += frame {
		for ; k < len(arr) && arr[k].at <= tick; k++ {
			clock.t = start.Add(arr[k].at)
			jb.Push(arr[k].p)
		}
		clock.t = start.Add(tick)
		if _, err := jb.PopTo(dec); err != nil {
			t.Fatal(err)
		}
	}
	return phone.Samples(), jb.Stats()
}

// relay stands for the RTP hop between the gateway and the phone: it
// passes μ-law payloads on.
type relay struct{ dst transcode.BytesWriter }

func (r *relay) WriteSample(p []byte) error { return r.dst.WriteSample(p) }
func (r *relay) SampleRate() int            { return 8000 }
func (r *relay) String() string             { return "RTP -> " + r.dst.String() }
func (r *relay) Close() error               { return r.dst.Close() }
