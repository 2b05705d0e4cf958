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

// TestParseConfigTrunkTLS: tls_server_name goes with transport tls, and a
// trunk given by IP address may skip certificate checks only when every
// tls trunk does.
func TestParseConfigTrunkTLS(t *testing.T) {
	second := func(lines string) string {
		return strings.Replace(validYAML, "queues:\n", "  - name: lab\n    uri: \"sip:192.0.2.7\"\n"+lines+"queues:\n", 1)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"server name over tls", strings.Replace(validYAML, "    register: true\n", "    register: true\n    transport: tls\n    tls_server_name: pbx.example.com\n", 1), ""},
		{"server name over udp", strings.Replace(validYAML, "    register: true\n", "    register: true\n    tls_server_name: pbx.example.com\n", 1), "trunks[0].tls_server_name: only used with transport: tls"},
		{"server name with port", strings.Replace(validYAML, "    register: true\n", "    register: true\n    transport: tls\n    tls_server_name: \"pbx.example.com:5061\"\n", 1), `trunks[0].tls_server_name: "pbx.example.com:5061" is not a host name`},
		{"insecure ip trunk beside a verified one", strings.Replace(second("    transport: tls\n    tls_insecure_skip_verify: true\n"), "    register: true\n", "    register: true\n    transport: tls\n", 1),
			"trunks[1].tls_insecure_skip_verify: a tls trunk whose host is an IP address may skip verification only when every tls trunk does"},
		{"insecure ip trunk beside a udp one", second("    transport: tls\n    tls_insecure_skip_verify: true\n"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.doc), testEnv)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
