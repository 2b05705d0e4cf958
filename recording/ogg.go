package recording

import (
	"encoding/binary"
	"io"
)

// oggCRCTable is the CRC-32 of Ogg pages: polynomial 0x04c11db7, no bit
// reflection, initial value 0 and no final XOR (RFC 3533 §6).
var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

func oggCRC(b []byte) uint32 {
	var crc uint32
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

// Page header flags (RFC 3533 §6).
const (
	oggBOS = 0x02
	oggEOS = 0x04
)

// oggStream writes one logical Ogg bitstream, gathering packets into
// pages until flush (or until a page's 255 lacing values are used up).
type oggStream struct {
	w       io.Writer
	serial  uint32
	seq     uint32
	granule uint64
	lacing  []byte
	body    []byte
	packets int
}

// page writes one page holding the packets gathered so far.
func (o *oggStream) page(flags byte) error {
	hdr := make([]byte, 27, 27+len(o.lacing)+len(o.body))
	copy(hdr, "OggS")
	hdr[5] = flags
	binary.LittleEndian.PutUint64(hdr[6:], o.granule)
	binary.LittleEndian.PutUint32(hdr[14:], o.serial)
	binary.LittleEndian.PutUint32(hdr[18:], o.seq)
	hdr[26] = byte(len(o.lacing))
	p := append(append(hdr, o.lacing...), o.body...)
	binary.LittleEndian.PutUint32(p[22:], oggCRC(p))
	o.seq++
	o.lacing, o.body, o.packets = o.lacing[:0], o.body[:0], 0
	_, err := o.w.Write(p)
	return err
}

// lacingOf is the number of lacing values a packet of n bytes takes: a
// run of 255 and one value below 255 (RFC 3533 §5).
func lacingOf(n int) int { return n/255 + 1 }

// packet adds a packet that ends at granule position granule. It writes
// the page first when the packet would not fit in it.
func (o *oggStream) packet(p []byte, granule uint64) error {
	if len(o.lacing)+lacingOf(len(p)) > 255 {
		if err := o.page(0); err != nil {
			return err
		}
	}
	for n := len(p); ; n -= 255 {
		if n < 255 {
			o.lacing = append(o.lacing, byte(n))
			break
		}
		o.lacing = append(o.lacing, 255)
	}
	o.body = append(o.body, p...)
	o.granule = granule
	o.packets++
	return nil
}

// flush writes the packets gathered so far as a page, if there are any.
func (o *oggStream) flush() error {
	if o.packets == 0 {
		return nil
	}
	return o.page(0)
}

// opusHead is the identification header of a stereo Ogg Opus stream
// (RFC 7845 §5.1), channel mapping family 0.
func opusHead(preSkip uint16, inputRate uint32) []byte {
	h := make([]byte, 19)
	copy(h, "OpusHead")
	h[8] = 1 // version
	h[9] = 2 // channels
	binary.LittleEndian.PutUint16(h[10:], preSkip)
	binary.LittleEndian.PutUint32(h[12:], inputRate)
	return h
}

// opusTags is the comment header (RFC 7845 §5.2) with the vendor string
// and the given user comments ("KEY=value").
func opusTags(vendor string, comments ...string) []byte {
	b := []byte("OpusTags")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vendor)))
	b = append(b, vendor...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(comments)))
	for _, c := range comments {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}
