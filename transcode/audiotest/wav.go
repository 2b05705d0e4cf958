package audiotest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/segue-rtc/segue/transcode"
)

// ErrWAVFormat is returned by ReadWAV for a file that is not 16-bit mono
// linear PCM in a RIFF/WAVE container.
var ErrWAVFormat = errors.New("audiotest: not a 16-bit mono pcm wav")

const (
	wavFormatPCM        = 1
	wavFormatExtensible = 0xFFFE
)

// WriteWAV writes pcm as a 16-bit mono linear PCM WAV file at rate.
func WriteWAV(w io.Writer, pcm transcode.PCM16, rate int) error {
	data := uint32(2 * len(pcm))
	var h [44]byte
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+data)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], wavFormatPCM)
	binary.LittleEndian.PutUint16(h[22:], 1)
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], data)
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("audiotest: write wav header: %w", err)
	}
	body := make([]byte, data)
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(body[2*i:], uint16(v))
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("audiotest: write wav data: %w", err)
	}
	return nil
}

// ReadWAV reads a 16-bit mono linear PCM WAV file (plain or
// WAVE_FORMAT_EXTENSIBLE with the PCM sub-format) and returns its samples
// and rate. Chunks other than "fmt " and "data" are skipped.
func ReadWAV(r io.Reader) (transcode.PCM16, int, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("audiotest: read wav: %w", err)
	}
	if len(b) < 12 || !bytes.Equal(b[0:4], []byte("RIFF")) || !bytes.Equal(b[8:12], []byte("WAVE")) {
		return nil, 0, fmt.Errorf("no RIFF/WAVE header: %w", ErrWAVFormat)
	}
	rate := 0
	b = b[12:]
	for len(b) >= 8 {
		id, size := string(b[0:4]), int(binary.LittleEndian.Uint32(b[4:8]))
		b = b[8:]
		if size < 0 || size > len(b) {
			if id != "data" {
				return nil, 0, fmt.Errorf("chunk %q of %d bytes overruns the file: %w", id, size, ErrWAVFormat)
			}
			size = len(b) &^ 1 // a streamed file may leave the size unset
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, 0, fmt.Errorf("fmt chunk of %d bytes: %w", size, ErrWAVFormat)
			}
			format := binary.LittleEndian.Uint16(b[0:])
			channels := binary.LittleEndian.Uint16(b[2:])
			bits := binary.LittleEndian.Uint16(b[14:])
			if format == wavFormatExtensible && size >= 26 {
				format = binary.LittleEndian.Uint16(b[24:])
			}
			if format != wavFormatPCM || channels != 1 || bits != 16 {
				return nil, 0, fmt.Errorf("format %d, %d channels, %d bits: %w", format, channels, bits, ErrWAVFormat)
			}
			rate = int(binary.LittleEndian.Uint32(b[4:]))
		case "data":
			if rate == 0 {
				return nil, 0, fmt.Errorf("data chunk before fmt chunk: %w", ErrWAVFormat)
			}
			pcm := make(transcode.PCM16, size/2)
			for i := range pcm {
				pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
			}
			return pcm, rate, nil
		}
		b = b[min(len(b), size+size&1):]
	}
	return nil, 0, fmt.Errorf("no data chunk: %w", ErrWAVFormat)
}

// WriteWAVFile writes pcm to the WAV file at path, replacing it.
func WriteWAVFile(path string, pcm transcode.PCM16, rate int) error {
	var buf bytes.Buffer
	if err := WriteWAV(&buf, pcm, rate); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("audiotest: %w", err)
	}
	return nil
}

// ReadWAVFile reads the WAV file at path; see ReadWAV.
func ReadWAVFile(path string) (transcode.PCM16, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("audiotest: %w", err)
	}
	defer f.Close()
	return ReadWAV(f)
}
