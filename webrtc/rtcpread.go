package webrtc

import (
	"errors"
	"io"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// rtcpReadSize is the buffer of an RTCP reader: more than pion's receive
// MTU (1460 bytes), so no datagram is cut.
const rtcpReadSize = 1500

// rtcpSource is the RTCP side of a pion RTPSender or RTPReceiver.
type rtcpSource interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// readRTCP reads the next RTCP compound packet from src into buf and
// returns its packets, parsed once by the interceptors when one of them
// did. Unlike pion's ReadRTCP it allocates no buffer for each read, and
// a compound packet that does not parse is skipped instead of ending the
// reading: SRTCP authenticates the browser, not what it sends, and one
// bad packet must not leave the rest of the call without its reports.
// It returns an error only when the stream has ended.
func readRTCP(src rtcpSource, buf []byte) ([]rtcp.Packet, error) {
	for {
		n, a, err := src.Read(buf)
		if err == nil {
			var pkts []rtcp.Packet
			if pkts, err = a.GetRTCPPackets(buf[:n]); err == nil {
				return pkts, nil
			}
		}
		if rtcpEnded(err) {
			return nil, err
		}
	}
}

// drainRTCP reads the RTCP of a receiver (the browser's sender reports) so
// that the interceptors process it, until the receiver stops.
func drainRTCP(src rtcpSource) {
	buf := make([]byte, rtcpReadSize)
	for {
		if _, _, err := src.Read(buf); rtcpEnded(err) {
			return
		}
	}
}

// rtcpEnded tells the errors of a stream that has ended (pion's RTPSender
// and RTPReceiver once stopped, the SRTCP stream once closed) from those of
// one packet.
func rtcpEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}
