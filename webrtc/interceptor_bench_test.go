package webrtc

import (
	"log/slog"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"
)

// BenchmarkAudioInterceptors is one 20 ms Opus packet through the
// engine's interceptor chain, toward the browser (send) and from it
// (receive), with the networking left out: the writer at the end and the
// reader at the start are in memory. "twcc" binds the stream with the
// transport-wide sequence number extension negotiated, as audio was until
// registerInterceptors kept it for video; "plain" without it, as audio is
// now.
func BenchmarkAudioInterceptors(b *testing.B) {
	for _, tc := range []struct {
		name string
		twcc bool
	}{{"twcc", true}, {"plain", false}} {
		chain := func(b *testing.B) (interceptor.Interceptor, *interceptor.StreamInfo) {
			me := &pwebrtc.MediaEngine{}
			reg := &interceptor.Registry{}
			if err := registerInterceptors(me, reg, &bweFactory{}, pionLoggerFactory{log: slog.New(slog.DiscardHandler)}); err != nil {
				b.Fatal(err)
			}
			ic, err := reg.Build("")
			if err != nil {
				b.Fatal(err)
			}
			ic.BindRTCPWriter(interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }))
			b.Cleanup(func() { _ = ic.Close() })
			info := &interceptor.StreamInfo{SSRC: 0x1234, PayloadType: 111, ClockRate: 48000, Channels: 2, MimeType: pwebrtc.MimeTypeOpus}
			if tc.twcc {
				info.RTPHeaderExtensions = []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}}
			}
			return ic, info
		}
		payload := make([]byte, 60)
		b.Run("send/"+tc.name, func(b *testing.B) {
			ic, info := chain(b)
			w := ic.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
				return len(p), nil
			}))
			h := rtp.Header{Version: 2, PayloadType: 111, SSRC: info.SSRC}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.SequenceNumber++
				h.Timestamp += 960
				h.Extensions = h.Extensions[:0]
				h.Extension = false
				if _, err := w.Write(&h, payload, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("receive/"+tc.name, func(b *testing.B) {
			ic, info := chain(b)
			h := rtp.Header{Version: 2, PayloadType: 111, SSRC: info.SSRC}
			if tc.twcc {
				_ = h.SetExtension(3, []byte{0, 0})
			}
			pkt := make([]byte, 1500)
			var seq uint16
			r := ic.BindRemoteStream(info, interceptor.RTPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
				seq++
				h.SequenceNumber, h.Timestamp = seq, uint32(seq)*960
				if tc.twcc {
					_ = h.SetExtension(3, []byte{byte(seq >> 8), byte(seq)})
				}
				n, err := h.MarshalTo(buf)
				if err != nil {
					return 0, nil, err
				}
				return n + copy(buf[n:], payload), a, nil
			}))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, _, err := r.Read(pkt, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
