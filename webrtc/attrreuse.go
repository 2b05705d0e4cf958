package webrtc

import (
	"github.com/pion/interceptor"
)

// pion's RTCP receiver-report interceptor reads the RTP header of every
// packet a browser sends through the packet's interceptor.Attributes,
// and when the packet comes without any (as every packet from the SRTP
// stream does) it makes a new map for it: a map, its bucket and the
// parsed header for each packet, about 350 bytes 50 times a second per
// call, which were most of what a call allocates. reusedAttributes sits
// nearest the network and hands the interceptors above it one map per
// remote stream, emptied before each packet, so that only the header is
// new.
//
// A stream's packets are read by one goroutine at a time (the track's
// reader), and no interceptor here keeps the attributes past the read
// that returned them, so one map per stream is never shared between two
// packets in flight. The map is emptied before each packet, so no value
// of the previous one (in particular its parsed header) is seen again.

// reusedAttributesFactory builds reusedAttributes.
type reusedAttributesFactory struct{}

// NewInterceptor implements interceptor.Factory.
func (reusedAttributesFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &reusedAttributes{}, nil
}

// reusedAttributes gives each remote stream's packets one Attributes map.
type reusedAttributes struct{ interceptor.NoOp }

// BindRemoteStream implements interceptor.Interceptor.
func (*reusedAttributes) BindRemoteStream(_ *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	attrs := interceptor.Attributes{}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := reader.Read(b, a)
		if err != nil || a != nil {
			return n, a, err
		}
		clear(attrs)
		return n, attrs, nil
	})
}
