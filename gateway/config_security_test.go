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

// TestParseConfigInboundCredentials: inbound_password takes ${ENV} like
// password, and inbound credentials make sense only with inbound_auth.
func TestParseConfigInboundCredentials(t *testing.T) {
	lookup := env(map[string]string{"SEGUE_TEST_PW": "pw", "SEGUE_TEST_SECRET": "0123456789abcdef-secret", "SEGUE_IN_PW": "in$2a$pw"})
	doc := strings.Replace(validYAML, "    register: true\n",
		"    register: true\n    inbound_auth: true\n    inbound_username: pbx-in\n    inbound_password: \"${SEGUE_IN_PW}\"\n", 1)
	cfg, err := ParseConfig([]byte(doc), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if tr := cfg.Trunks[0]; tr.InboundPassword != "in$2a$pw" || tr.InboundUsername != "pbx-in" || tr.Password != "pw" {
		t.Errorf("inbound credentials %q/%q, password %q", tr.InboundUsername, tr.InboundPassword, tr.Password)
	}

	for _, tt := range []struct{ lines, want string }{
		{"    inbound_password: \"${SEGUE_UNSET}\"\n    inbound_auth: true\n", "trunks[0].inbound_password: environment variable SEGUE_UNSET is not set"},
		{"    inbound_username: pbx-in\n", "trunks[0].inbound_username: only used with inbound_auth: true"},
		{"    inbound_password: x\n", "trunks[0].inbound_password: only used with inbound_auth: true"},
	} {
		doc := strings.Replace(validYAML, "    register: true\n", "    register: true\n"+tt.lines, 1)
		if _, err := ParseConfig([]byte(doc), lookup); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.lines, err, tt.want)
		}
	}
	noCreds := strings.NewReplacer("    username: segue\n", "", "    register: true\n", "    inbound_auth: true\n",
		`    password: "${SEGUE_TEST_PW}"`+"\n", "").Replace(validYAML)
	if _, err := ParseConfig([]byte(noCreds), lookup); err == nil || !strings.Contains(err.Error(), "trunks[0].inbound_auth: needs inbound_username and inbound_password") {
		t.Errorf("inbound_auth without credentials: %v", err)
	}
}
