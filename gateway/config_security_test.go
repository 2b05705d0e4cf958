package gateway

import (
	"strings"
	"testing"
)

// TestParseConfigSDESOverCleartext: srtp on a trunk whose signalling is
// not TLS would put the SDES master keys in clear on the wire; the config
// is refused unless the admin opts in explicitly.
func TestParseConfigSDESOverCleartext(t *testing.T) {
	tests := []struct {
		name  string
		trunk string // lines added to the trunk entry
		want  string // "" for a valid config
	}{
		{"srtp over udp", "    srtp: true\n", "trunks[0].srtp: SDES keys would travel in clear over udp; use transport: tls"},
		{"srtp over tcp", "    srtp: true\n    transport: tcp\n", "trunks[0].srtp: SDES keys would travel in clear over tcp"},
		{"srtp over tls", "    srtp: true\n    transport: tls\n", ""},
		{"srtp over udp, opted in", "    srtp: true\n    srtp_allow_insecure_transport: true\n", ""},
		{"udp without srtp", "    transport: udp\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(validYAML, "    register: true\n", "    register: true\n"+tt.trunk, 1)
			_, err := ParseConfig([]byte(doc), testEnv)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
