package main

import (
	"errors"
	"reflect"
	"testing"
)

func TestBencodeEncode(t *testing.T) {
	got, err := bencode(map[string]any{
		"command": "offer",
		"call-id": "c1",
		"flags":   []string{"trust-address"},
		"codec":   map[string]any{"mask": []string{"opus"}, "transcode": []string{"PCMU"}},
		"n":       -3,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "d7:call-id2:c15:codecd4:maskl4:opuse9:transcodel4:PCMUee7:command5:offer5:flagsl13:trust-addresse1:ni-3ee"
	if string(got) != want {
		t.Errorf("bencode:\n got %s\nwant %s", got, want)
	}
	if _, err := bencode(map[string]any{"x": 1.5}); err == nil {
		t.Error("a float encoded without error")
	}
}

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{
		"result": "ok",
		"sdp":    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
		"list":   []any{"a", int64(7), []any{}, map[string]any{}},
		"zero":   int64(0),
	}
	b, err := bencode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := bdecode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"result": "ok",
		"sdp":    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
		"list":   []any{"a", int64(7), []any(nil), map[string]any{}},
		"zero":   int64(0),
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("round trip: got %#v", out)
	}
}

// TestBdecodeMalformed feeds the decoder what a broken or hostile ng peer
// could send: each is an error, none panics.
func TestBdecodeMalformed(t *testing.T) {
	deep := make([]byte, 0, 200)
	for range 100 {
		deep = append(deep, 'l')
	}
	for _, in := range []string{
		"", "i", "i12", "ie", "i-0e", "i012e", "ixe", "5:abc", "-1:a", "99999999999999999999:a",
		"l", "li1e", "d", "d1:a", "di1ei2ee", "x", "4:spamx", "d3:keyi1e", string(deep),
	} {
		if v, err := bdecode([]byte(in)); !errors.Is(err, errBencode) {
			t.Errorf("bdecode(%q) = %v, %v; want errBencode", in, v, err)
		}
	}
}
