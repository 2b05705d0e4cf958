package sip

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSRTPCall(t *testing.T) {
	heardB, heardA := newRecorder(), newRecorder()
	calls := make(chan *Call, 1)
	b := startServer(t, []TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}, SRTP: true, SRTPAllowInsecureTransport: true}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c, err := in.Answer(ctx, heardB)
			if err == nil {
				calls <- c
			}
			return err
		}))
	a := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String(), SRTP: true, SRTPAllowInsecureTransport: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := a.Dial(ctx, "pbx", "sip:conv-1@127.0.0.1", DialOptions{AudioOut: heardA})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	bc := <-calls
	go playTone(ctx, call.AudioIn(), 1000)
	go playTone(ctx, bc.AudioIn(), 440)
	waitFor(t, "SRTP audio both ways", func() bool { return len(heardA.Samples()) >= 6000 && len(heardB.Samples()) >= 6000 })
	if f := peakFreq(heardB.Samples()[2000:]); f < 990 || f > 1010 {
		t.Errorf("b heard %v Hz", f)
	}
	if f := peakFreq(heardA.Samples()[2000:]); f < 430 || f > 450 {
		t.Errorf("a heard %v Hz", f)
	}
	for _, st := range []MediaStats{call.Stats(), bc.Stats()} {
		if !st.SRTP || st.SRTPFailures != 0 {
			t.Errorf("stats %+v", st)
		}
	}
	// A trunk that requires SRTP refuses a plain RTP offer with 488.
	plain := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String()}})
	_, err = plain.Dial(ctx, "pbx", "sip:conv-2@127.0.0.1", DialOptions{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 488 {
		t.Errorf("plain offer to an SRTP trunk: %v, want 488", err)
	}
}

func TestCryptoAttribute(t *testing.T) {
	k, err := newSDESKey()
	if err != nil {
		t.Fatal(err)
	}
	md := &mediaDesc{Proto: "RTP/SAVP", Crypto: []string{"1 AES_CM_128_HMAC_SHA1_32 inline:AAAA", "2 " + k.attr("")[1:] + "|2^31|1:1"}}
	tag, got, err := remoteCrypto(md)
	if err != nil || tag != "2" || string(got.key) != string(k.key) || string(got.salt) != string(k.salt) {
		t.Fatalf("tag %q err %v", tag, err)
	}
	if _, _, err := remoteCrypto(&mediaDesc{Crypto: []string{"1 AES_CM_128_HMAC_SHA1_80 inline:short"}}); !errors.Is(err, ErrSRTP) {
		t.Errorf("bad key accepted: %v", err)
	}
}
