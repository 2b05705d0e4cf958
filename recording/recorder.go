package recording

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// Rate is the sample rate of both channels: the 8 kHz of the voice bridge.
const Rate = 8000

// File formats.
const (
	FormatOgg = "ogg" // Opus in Ogg, stereo (RFC 7845)
	FormatWAV = "wav" // 16-bit PCM WAV, stereo
)

const (
	// frameSamples is one 20 ms frame per channel.
	frameSamples = Rate / 50
	// primeSamples is what a channel buffers before it is played out,
	// after the start or after running dry, to ride over jitter.
	primeSamples = 3 * frameSamples
	// maxBuffered bounds what a channel holds; past it the oldest audio
	// goes, keeping keepBuffered.
	maxBuffered  = Rate
	keepBuffered = Rate / 5
	// flushFrames is how often the file is written: once a second.
	flushFrames = 50
	// frame is the recording's clock tick.
	frame = 20 * time.Millisecond
)

// ContentType is the media type of a file of format.
func ContentType(format string) string {
	if format == FormatWAV {
		return "audio/wav"
	}
	return "audio/ogg"
}

// Ext is the file name extension of format, with its dot.
func Ext(format string) string {
	if format == FormatWAV {
		return ".wav"
	}
	return ".ogg"
}

// Options configure a Recorder.
type Options struct {
	// Format is FormatOgg (the default when empty) or FormatWAV.
	Format string
	// Bitrate is the Opus bitrate for FormatOgg; 0 means 32000.
	Bitrate int
	// Comments are Ogg Opus user comments, "KEY=value".
	Comments []string
}

// Recorder mixes two PCM streams that arrive at their own pace into one
// stereo file on its own 20 ms clock: a channel that has nothing to give
// when a frame is due records silence (a leg on hold, lost packets), and
// a channel that runs ahead loses its oldest audio past a second.
type Recorder struct {
	mu         sync.Mutex
	ch         [2]channel
	sink       sink
	frames     int64
	sinceFlush int
	frame      []int16
	closed     bool
	err        error
}

type sink interface {
	// frame takes one stereo frame, interleaved.
	frame(pcm []int16) error
	// flush writes what is pending to the file.
	flush() error
	// close writes the end of the file.
	close() error
}

// New starts a recording into w, writing the file's header at once.
func New(w io.WriteSeeker, opts Options) (*Recorder, error) {
	r := &Recorder{frame: make([]int16, 2*frameSamples)}
	switch opts.Format {
	case "", FormatOgg:
		bitrate := opts.Bitrate
		if bitrate == 0 {
			bitrate = 32000
		}
		s, err := newOggSink(w, bitrate, opts.Comments)
		if err != nil {
			return nil, err
		}
		r.sink = s
	case FormatWAV:
		s, err := newWAVSink(w)
		if err != nil {
			return nil, err
		}
		r.sink = s
	default:
		return nil, fmt.Errorf("%w: %q", ErrFormat, opts.Format)
	}
	return r, nil
}

// channel is one side's audio waiting for the recording's clock.
type channel struct {
	buf    []int16
	primed bool
}

func (c *channel) write(s []int16) {
	c.buf = append(c.buf, s...)
	if len(c.buf) > maxBuffered {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-keepBuffered:]...)
	}
}

// take fills dst (one channel of the frame, every other sample) from the
// buffer, silence where it has nothing.
func (c *channel) take(dst []int16, off int) {
	if !c.primed && len(c.buf) >= primeSamples {
		c.primed = true
	}
	n := 0
	if c.primed {
		n = min(frameSamples, len(c.buf))
	}
	for i := range frameSamples {
		v := int16(0)
		if i < n {
			v = c.buf[i]
		}
		dst[2*i+off] = v
	}
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	if c.primed && n < frameSamples {
		c.primed = false
	}
}

// Left is where the customer's audio goes.
func (r *Recorder) Left() transcode.PCMWriter { return channelWriter{r, 0} }

// Right is where the phone's audio goes.
func (r *Recorder) Right() transcode.PCMWriter { return channelWriter{r, 1} }

type channelWriter struct {
	r *Recorder
	i int
}

// WriteSample implements transcode.Writer; after Close it drops the audio
// quietly, since the legs outlive the recording.
func (w channelWriter) WriteSample(s transcode.PCM16) error {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if !w.r.closed {
		w.r.ch[w.i].write(s)
	}
	return nil
}

func (w channelWriter) SampleRate() int { return Rate }
func (w channelWriter) Close() error    { return nil }
func (w channelWriter) String() string {
	return [2]string{"Recording(left)", "Recording(right)"}[w.i]
}

// Tick records one 20 ms frame from both channels; every second's worth
// of frames goes to the file.
func (r *Recorder) Tick() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tickLocked()
}

func (r *Recorder) tickLocked() error {
	if r.closed {
		return ErrClosed
	}
	if r.err != nil {
		return r.err
	}
	r.ch[0].take(r.frame, 0)
	r.ch[1].take(r.frame, 1)
	if err := r.sink.frame(r.frame); err != nil {
		r.err = fmt.Errorf("recording: %w", err)
		return r.err
	}
	r.frames++
	if r.sinceFlush++; r.sinceFlush >= flushFrames {
		r.sinceFlush = 0
		if err := r.sink.flush(); err != nil {
			r.err = fmt.Errorf("recording: %w", err)
			return r.err
		}
	}
	return nil
}

// Run ticks on the wall clock until ctx ends or the recording fails or is
// closed: late ticks are caught up, so the file lasts as long as the call.
func (r *Recorder) Run(ctx context.Context) error {
	start := time.Now()
	t := time.NewTicker(frame)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			due := int64(now.Sub(start) / frame)
			r.mu.Lock()
			var err error
			for i := 0; r.frames < due && i < flushFrames && err == nil; i++ {
				err = r.tickLocked()
			}
			r.mu.Unlock()
			if err != nil {
				if err == ErrClosed {
					return nil
				}
				return err
			}
		}
	}
}

// Duration is how much audio has been recorded.
func (r *Recorder) Duration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.frames) * frame
}

// Close writes what is pending and the end of the file. It does not close
// the writer New was given.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.err != nil {
		return r.err
	}
	if err := r.sink.close(); err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	return nil
}

// oggSink encodes frames to stereo Opus in Ogg pages.
type oggSink struct {
	enc *transcode.StereoOpusEncoder
	s   oggStream
	pkt []byte
}

func newOggSink(w io.Writer, bitrate int, comments []string) (*oggSink, error) {
	enc, err := transcode.NewStereoOpusEncoder(Rate, bitrate)
	if err != nil {
		return nil, err
	}
	o := &oggSink{enc: enc, s: oggStream{w: w, serial: uint32(time.Now().UnixNano())}, pkt: make([]byte, 1500)}
	pre := enc.Lookahead()
	// The headers take a page each, the identification header first with
	// granule position 0 (RFC 7845 §3).
	if err := o.s.packet(opusHead(uint16(pre), Rate), 0); err != nil {
		return nil, err
	}
	if err := o.s.page(oggBOS); err != nil {
		return nil, err
	}
	if err := o.s.packet(opusTags("segue", comments...), 0); err != nil {
		return nil, err
	}
	if err := o.s.page(0); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *oggSink) frame(pcm []int16) error {
	n, err := o.enc.Encode(pcm, o.pkt)
	if err != nil {
		return err
	}
	// Granule positions count 48 kHz samples whatever the input rate
	// (RFC 7845 §4).
	return o.s.packet(o.pkt[:n], o.s.granule+transcode.OpusClockRate/50)
}

func (o *oggSink) flush() error { return o.s.flush() }
func (o *oggSink) close() error { return o.s.page(oggEOS) }

// wavSink writes 16-bit stereo PCM and keeps the header's sizes right at
// every flush, so the file is playable up to the last flush.
type wavSink struct {
	w       io.WriteSeeker
	pending []byte
	data    uint32
}

func newWAVSink(w io.WriteSeeker) (*wavSink, error) {
	s := &wavSink{w: w}
	if _, err := w.Write(s.header()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *wavSink) header() []byte {
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+s.data)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 2)
	binary.LittleEndian.PutUint32(h[24:], Rate)
	binary.LittleEndian.PutUint32(h[28:], Rate*4)
	binary.LittleEndian.PutUint16(h[32:], 4)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], s.data)
	return h
}

func (s *wavSink) frame(pcm []int16) error {
	for _, v := range pcm {
		s.pending = binary.LittleEndian.AppendUint16(s.pending, uint16(v))
	}
	return nil
}

func (s *wavSink) flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	if _, err := s.w.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	if _, err := s.w.Write(s.pending); err != nil {
		return err
	}
	s.data += uint32(len(s.pending))
	s.pending = s.pending[:0]
	if _, err := s.w.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := s.w.Write(s.header())
	return err
}

func (s *wavSink) close() error { return s.flush() }
