package transcode

// PCM16 is mono 16-bit linear audio at the sample rate of the writer it is
// written to.
type PCM16 []int16

// Writer accepts frames of T. WriteSample must not keep sample after it
// returns: the caller may reuse the buffer.
type Writer[T any] interface {
	WriteSample(sample T) error
	// SampleRate is the rate, in Hz, of the audio this writer accepts.
	SampleRate() int
	// String describes the chain this writer leads, e.g.
	// "PCMU(encode) -> RTP(pt=0)", for logs.
	String() string
}

// WriteCloser is a Writer that owns resources released by Close.
type WriteCloser[T any] interface {
	Writer[T]
	Close() error
}

// PCMWriter accepts PCM16 frames.
type PCMWriter = WriteCloser[PCM16]

// BytesWriter accepts encoded frames (G.711 or Opus payloads).
type BytesWriter = WriteCloser[[]byte]
