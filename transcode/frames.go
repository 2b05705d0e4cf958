package transcode

import "fmt"

// framer is the stage built by Frames.
type framer struct {
	dst     PCMWriter
	samples int
	buf     PCM16
}

// Frames returns a writer that takes PCM in frames of any length and writes
// frames of exactly samples to dst (160 for 20 ms at 8 kHz), keeping the
// remainder for the next write. Close writes a last partial frame padded
// with silence, then closes dst. A samples below 1 is treated as 1.
func Frames(dst PCMWriter, samples int) PCMWriter {
	samples = max(samples, 1)
	return &framer{dst: dst, samples: samples, buf: make(PCM16, 0, samples)}
}

func (f *framer) WriteSample(s PCM16) error {
	for len(s) > 0 {
		if len(f.buf) == 0 && len(s) >= f.samples {
			if err := f.dst.WriteSample(s[:f.samples]); err != nil {
				return err
			}
			s = s[f.samples:]
			continue
		}
		n := min(f.samples-len(f.buf), len(s))
		f.buf = append(f.buf, s[:n]...)
		s = s[n:]
		if len(f.buf) == f.samples {
			err := f.dst.WriteSample(f.buf)
			f.buf = f.buf[:0]
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *framer) SampleRate() int { return f.dst.SampleRate() }

func (f *framer) Close() error {
	var err error
	if len(f.buf) > 0 {
		n := len(f.buf)
		f.buf = f.buf[:f.samples]
		clear(f.buf[n:])
		err = f.dst.WriteSample(f.buf)
		f.buf = f.buf[:0]
	}
	if cerr := f.dst.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *framer) String() string { return fmt.Sprintf("Frames(%d) -> %s", f.samples, f.dst) }
