package recording

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/segue-rtc/segue/transcode"
)

// Read decodes a recording (Ogg Opus or WAV, told apart by their first
// bytes) into its left and right channels at Rate. A file cut short by a
// crash reads up to its last complete page.
func Read(r io.Reader) (left, right transcode.PCM16, err error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("recording: read: %w", err)
	}
	switch {
	case bytes.HasPrefix(data, []byte("OggS")):
		return readOgg(data)
	case bytes.HasPrefix(data, []byte("RIFF")):
		return readWAV(data)
	}
	return nil, nil, fmt.Errorf("%w: neither Ogg nor WAV", ErrCorrupt)
}

func readWAV(data []byte) (left, right transcode.PCM16, err error) {
	if len(data) < 44 || string(data[8:16]) != "WAVEfmt " || binary.LittleEndian.Uint16(data[22:]) != 2 ||
		binary.LittleEndian.Uint32(data[24:]) != Rate || binary.LittleEndian.Uint16(data[34:]) != 16 {
		return nil, nil, fmt.Errorf("%w: not 16-bit stereo WAV at %d Hz", ErrCorrupt, Rate)
	}
	n := min(int(binary.LittleEndian.Uint32(data[40:])), len(data)-44) / 4
	left, right = make(transcode.PCM16, n), make(transcode.PCM16, n)
	for i := range n {
		left[i] = int16(binary.LittleEndian.Uint16(data[44+4*i:]))
		right[i] = int16(binary.LittleEndian.Uint16(data[46+4*i:]))
	}
	return left, right, nil
}

// oggPackets splits an Ogg stream into its packets and returns the last
// page's granule position; it checks every page's CRC.
func oggPackets(data []byte) (packets [][]byte, granule uint64, err error) {
	var partial []byte
	for len(data) > 0 {
		if len(data) < 27 || string(data[:4]) != "OggS" {
			break // a page cut short by a crash ends the file
		}
		nseg := int(data[26])
		if len(data) < 27+nseg {
			break
		}
		lacing := data[27 : 27+nseg]
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		end := 27 + nseg + size
		if len(data) < end {
			break
		}
		page := append([]byte(nil), data[:end]...)
		want := binary.LittleEndian.Uint32(page[22:])
		binary.LittleEndian.PutUint32(page[22:], 0)
		if oggCRC(page) != want {
			return nil, 0, fmt.Errorf("%w: page checksum", ErrCorrupt)
		}
		granule = binary.LittleEndian.Uint64(data[6:])
		body := data[27+nseg : end]
		for _, l := range lacing {
			partial = append(partial, body[:l]...)
			body = body[l:]
			if l < 255 {
				packets = append(packets, partial)
				partial = nil
			}
		}
		data = data[end:]
	}
	return packets, granule, nil
}

func readOgg(data []byte) (left, right transcode.PCM16, err error) {
	packets, granule, err := oggPackets(data)
	if err != nil {
		return nil, nil, err
	}
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) || len(packets[0]) < 19 ||
		packets[0][9] != 2 || !bytes.HasPrefix(packets[1], []byte("OpusTags")) {
		return nil, nil, fmt.Errorf("%w: not a stereo Ogg Opus stream", ErrCorrupt)
	}
	preSkip := int(binary.LittleEndian.Uint16(packets[0][10:])) * Rate / transcode.OpusClockRate
	dec, err := transcode.NewStereoOpusDecoder(Rate)
	if err != nil {
		return nil, nil, err
	}
	pcm := make([]int16, 2*Rate*120/1000)
	for _, p := range packets[2:] {
		if len(p) == 0 {
			continue
		}
		n, err := dec.Decode(p, pcm)
		if err != nil {
			return nil, nil, fmt.Errorf("recording: %w", err)
		}
		for i := range n {
			left, right = append(left, pcm[2*i]), append(right, pcm[2*i+1])
		}
	}
	// The last page's granule position says where the audio ends; the
	// pre-skip is the encoder's delay at the start (RFC 7845 §4).
	if end := int(granule * Rate / transcode.OpusClockRate); end < len(left) {
		left, right = left[:end], right[:end]
	}
	if preSkip > len(left) {
		preSkip = len(left)
	}
	return left[preSkip:], right[preSkip:], nil
}
