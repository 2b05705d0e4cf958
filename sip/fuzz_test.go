package sip

import (
	"net/netip"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
)

// FuzzSDP parses arbitrary descriptions, negotiates against our codecs
// and, when that works, checks that the answer we would build parses
// back to the same choice.
func FuzzSDP(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"))
	f.Add([]byte("v=0\nc=IN IP6 ::1\nm=audio 1 RTP/SAVP 8\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n"))
	f.Add([]byte("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 PCMA/8000/1\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		md, err := parseSDP(body)
		if err != nil {
			return
		}
		_ = md.remote()
		_ = md.dtmfPT()
		c, err := md.negotiate([]string{"PCMU", "PCMA"})
		if err != nil {
			return
		}
		ans := buildSDP(sdpParams{Addr: netip.MustParseAddr("127.0.0.1"), Port: 5000, Codecs: []Codec{c}, DTMFPT: md.dtmfPT(), Direction: md.Direction.mirror()})
		back, err := parseSDP(ans)
		if err != nil {
			t.Fatalf("our answer does not parse: %v\n%s", err, ans)
		}
		c2, err := back.negotiate([]string{c.Name})
		if err != nil || c2.Name != c.Name || c2.PT != c.PT {
			t.Fatalf("answer codec %v, want %v", c2, c)
		}
	})
}

// FuzzHeaders feeds header values a far end controls to the code that
// reads them: Refer-To, dialled targets, caller-supplied headers, DTMF
// INFO bodies and Session-Expires.
func FuzzHeaders(f *testing.F) {
	for _, s := range []string{"<sip:2002@pbx.example.com>", "<sip:x@y?Replaces=abc>", "tel:+34911234567;phone-context=x", "sip:+1@[::1]:5060;transport=tcp", "<", "Signal=5\r\nDuration=160", "90;refresher=uac"} {
		f.Add(s)
	}
	tr, err := newTrunk(TrunkConfig{Name: "t", URI: "sip:pbx.example.com", Normalize: []NormalizeRule{{Match: "00", Strip: 2, Prepend: "+"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if u, err := parseReferTo(v); err == nil {
			_, _ = tr.referTarget(u)
		}
		_, _ = tr.targetURI(v)
		_ = checkDialHeaders(map[string]string{"X-" + v: v})
		req := sipmsg.NewRequest(sipmsg.INFO, sipmsg.Uri{Scheme: "sip", Host: "x"})
		req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/dtmf-relay"))
		req.SetBody([]byte(v))
		c := &Call{events: make(chan Event, 64)}
		c.handleInfoBody(req)
		for len(c.events) > 0 {
			if e := <-c.events; e.Kind != EventDTMF {
				t.Fatalf("event %v from INFO", e.Kind)
			}
		}
		_ = sessionExpires(v)
	})
}
