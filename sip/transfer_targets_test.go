package sip

import (
	"errors"
	"strings"
	"testing"
)

func TestTransferPatternGrammar(t *testing.T) {
	for _, ok := range []string{"1xxx", "600", "+4420794601.", "NXXNXXXXXX", "Z.", "*72", "sip:*@pbx.example.com", "sip:2xxx@pbx.example.com:5060", "sip:alice@pbx.example.com", "sips:*@[2001:db8::1]:5061"} {
		if _, err := parseTransferPattern(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " 1xxx", "1x+x", ".", "1.x", "12a4", "tel:+1900", "pbx.example.com", "sip:@pbx", "sip:*@", "sip:1xxx", "sip:a*b@pbx", "sip:*@*.example.com", "sip:*@pbx:99999", "sip:*@pbx;transport=tcp"} {
		if _, err := parseTransferPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	tc := TrunkConfig{Name: "pbx", URI: "sip:pbx.example.com", TransferTargets: []string{"1xxx", "sip:*@", "9x"}}
	tc.ApplyDefaults()
	err := tc.Validate()
	if err == nil || !strings.Contains(err.Error(), "transfer_targets[1]:") || strings.Contains(err.Error(), "transfer_targets[0]") {
		t.Errorf("validate: %v, want an error naming transfer_targets[1] only", err)
	}
}

func TestMatchNumber(t *testing.T) {
	for _, tc := range []struct {
		pattern, number string
		want            bool
	}{
		{"1xxx", "1234", true},
		{"1xxx", "123", false},
		{"1xxx", "12345", false},
		{"1xxx", "2234", false},
		{"1XXX", "1*34", false},
		{"NXX", "200", true},
		{"NXX", "100", false},
		{"Z", "0", false},
		{"Z", "9", true},
		{"+44.", "+4420794601", true},
		{"+44.", "+44", false},
		{"600", "600", true},
		{"600", "6000", false},
	} {
		if got := matchNumber(tc.pattern, tc.number); got != tc.want {
			t.Errorf("matchNumber(%q, %q) = %v, want %v", tc.pattern, tc.number, got, tc.want)
		}
	}
}

func TestTransferTargets(t *testing.T) {
	trunkWith := func(targets ...string) *trunk {
		tr, err := newTrunk(TrunkConfig{Name: "pbx", URI: "sip:pbx.example.com:5060", TransferTargets: targets})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	def := trunkWith()
	listed := trunkWith("1xxx", "+4420794601.", "sip:*@queues.example.com", "sip:sales@pbx.example.com")
	for _, tc := range []struct {
		tr     *trunk
		target string
		ok     bool
	}{
		// The default: extensions on the trunk's own host.
		{def, "sip:2002@pbx.example.com", true},
		{def, "sip:2002@PBX.example.com:5060", true},
		{def, "sip:reception@pbx.example.com", true},
		{def, "2002", true},
		{def, "sip:2002@pbx.example.com:5070", false},
		{def, "sip:2002@evil.example.net", false},
		{def, "tel:2002", false},
		{def, "tel:+19005551234", false},
		{def, "sip:+19005551234@pbx.example.com", false},
		{def, "sip:%2B19005551234@pbx.example.com", false},
		{def, "sip:+1-900-555-1234@pbx.example.com;user=phone", false},
		{def, "sip:0019005551234@pbx.example.com", false},
		{def, "sip:01119005551234@pbx.example.com", false},
		{def, "sip:1900@pbx.example.com", false},
		{def, "sip:0900123@pbx.example.com", false},
		{def, "sip:0912@pbx.example.com", false},
		{def, "sip:5551234@pbx.example.com", false},
		{def, "sip:*7219005551234@pbx.example.com", false},
		{def, "+19005551234", false},
		{def, "sip:pbx.example.com", false},
		{def, "sip:19005551234x@pbx.example.com", false},
		{def, "sip:tel%3A+1900@pbx.example.com", false},
		{def, "sip:0900-help@pbx.example.com", false},
		{def, "sip:sales2@pbx.example.com", true},
		// A list replaces the default.
		{listed, "sip:1234@pbx.example.com", true},
		{listed, "1234", true},
		{listed, "tel:+442079460123", true},
		{listed, "sip:+442079460123@pbx.example.com", true},
		{listed, "sip:anyone@queues.example.com", true},
		{listed, "sip:sales@pbx.example.com", true},
		{listed, "sip:2002@pbx.example.com", false},
		{listed, "sip:1234@evil.example.net", false},
		{listed, "tel:+19005551234", false},
		{listed, "sip:Sales@pbx.example.com", false},
		{listed, "sip:sales@evil.example.net", false},
	} {
		_, err := tc.tr.referTarget(tc.target)
		if (err == nil) != tc.ok {
			t.Errorf("%s (list %v): %v, want allowed %v", tc.target, tc.tr.cfg.TransferTargets, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrTransferRefused) {
			t.Errorf("%s: %v does not match ErrTransferRefused", tc.target, err)
		}
	}
}

// FuzzTransferTargets feeds a pattern (as an admin might write it) and a
// Refer-To target (as a PBX or an attacker might send it) to the transfer
// rules: no panic, and the default rule never lets a tel: URI or a
// public-looking number through.
func FuzzTransferTargets(f *testing.F) {
	for _, s := range [][2]string{
		{"1xxx", "sip:1234@pbx.example.com"},
		{"sip:*@pbx.example.com", "tel:+19005551234"},
		{"+44.", "sip:%2B4420@pbx.example.com;user=phone"},
		{"N.", "sip:+1-900-555@pbx.example.com:5060"},
		{"sip:2xxx@[::1]:5061", "sips:2001@[::1]:5061"},
	} {
		f.Add(s[0], s[1])
	}
	def, err := newTrunk(TrunkConfig{Name: "t", URI: "sip:pbx.example.com"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pattern, target string) {
		if tr, err := newTrunk(TrunkConfig{Name: "t", URI: "sip:pbx.example.com", TransferTargets: []string{pattern}}); err == nil {
			_, _ = tr.referTarget(target)
		}
		if def.allowsTransfer(target) != nil {
			return
		}
		tt, err := splitTransferTarget(target)
		if err != nil {
			t.Fatalf("%q allowed but does not split: %v", target, err)
		}
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(target)), "tel:") || tt.number != "" && looksPSTN(tt.number) || tt.number == "" && namedLooksPSTN(tt.user) {
			t.Fatalf("the default rule let %q (number %q) through", target, tt.number)
		}
	})
}
