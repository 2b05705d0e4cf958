package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/configs"
)

const validYAML = `
http:
  listen: "127.0.0.1:0"
  public_url: "http://localhost:8080"
  allowed_origins: ["https://shop.example.com"]
trunks:
  - name: pbx
    uri: "sip:pbx.example.com:5060"
    password: "${SEGUE_TEST_PW}"
    username: segue
    register: true
queues:
  - name: support
    trunk: pbx
    dial: "sip:600@pbx.example.com"
agents:
  - id: alice
    name: Alice
    password_hash: "$2a$04$3pRDyrkIGqD7SIbEJ8P4XOaFFDCZ2tz2nIq1HdyeqzFbWDUwFpYCa"
    phone: "sip:1001@pbx.example.com"
    queues: [support]
identity:
  secret: "${SEGUE_TEST_SECRET}"
`

func env(vals map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
}

var testEnv = env(map[string]string{"SEGUE_TEST_PW": "pw$1", "SEGUE_TEST_SECRET": "0123456789abcdef-secret"})

func TestParseConfigValid(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Trunks[0].Password; got != "pw$1" {
		t.Errorf("trunk password = %q, want the expanded value", got)
	}
	if got := cfg.Agents[0].PasswordHash; !strings.HasPrefix(got, "$2a$04$") {
		t.Errorf("bcrypt hash changed to %q", got)
	}
	if cfg.Limits.MaxChatsPerAgent != 4 || cfg.Store.Driver != "sqlite" || cfg.Trunks[0].Transport != "udp" {
		t.Errorf("defaults not applied: %+v %+v", cfg.Limits, cfg.Store)
	}
	if cfg.MaxChats(cfg.Agents[0]) != 4 {
		t.Errorf("max chats default")
	}
	if cfg.WebRTC.OpusComplexity != "auto" {
		t.Errorf("webrtc.opus_complexity defaults to %q, want auto", cfg.WebRTC.OpusComplexity)
	}
	for _, v := range []string{"auto", "3", `"3"`} {
		cfg, err := ParseConfig([]byte(validYAML+"webrtc:\n  opus_complexity: "+v+"\n"), testEnv)
		if err != nil {
			t.Errorf("opus_complexity: %s: %v", v, err)
		} else if want := strings.Trim(v, `"`); cfg.WebRTC.OpusComplexity != want {
			t.Errorf("opus_complexity: %s reads %q, want %q", v, cfg.WebRTC.OpusComplexity, want)
		}
	}
}

// TestCallLimitDefaults: the call-start limits default to 20 per address
// and 6 per conversation an hour; an explicit 0 is unlimited, not the
// default; queues[].voice and queues[].video default to always, and
// limits.max_peers_per_ip to 4 and peer_starts_per_ip_per_minute to 30.
func TestCallLimitDefaults(t *testing.T) {
	for _, tc := range []struct {
		name           string
		extra          string
		perIP, perConv int
	}{
		{"defaults", "", 20, 6},
		{"explicit", "limits:\n  calls_per_ip_per_hour: 3\n  calls_per_conversation_per_hour: 1\n", 3, 1},
		{"unlimited", "limits:\n  calls_per_ip_per_hour: 0\n  calls_per_conversation_per_hour: 0\n", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(validYAML+tc.extra), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Limits.callsPerIP(); got != tc.perIP {
				t.Errorf("calls_per_ip_per_hour = %d, want %d", got, tc.perIP)
			}
			if got := cfg.Limits.callsPerConversation(); got != tc.perConv {
				t.Errorf("calls_per_conversation_per_hour = %d, want %d", got, tc.perConv)
			}
			if cfg.Queues[0].Voice != VoiceAlways {
				t.Errorf("queues[0].voice = %q, want %q", cfg.Queues[0].Voice, VoiceAlways)
			}
			if l := cfg.Limits; cfg.Queues[0].Video != VideoAlways || l.MaxPeersPerIP != 4 || l.PeerStartsPerIPPerMinute != 30 {
				t.Errorf("queues[0].video = %q, limits.max_peers_per_ip = %d, limits.peer_starts_per_ip_per_minute = %d, want %q, 4 and 30",
					cfg.Queues[0].Video, l.MaxPeersPerIP, l.PeerStartsPerIPPerMinute, VideoAlways)
			}
		})
	}
	if (LimitsConfig{}).callsPerIP() != 20 || (LimitsConfig{}).callsPerConversation() != 6 {
		t.Error("an unset limit in a config built in Go is not the default")
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string // old, new in validYAML
		append  string
		want    string
	}{
		{"unknown top key", [2]string{}, "bogus: 1\n", "bogus: unknown key"},
		{"unknown nested key", [2]string{`listen: "127.0.0.1:0"`, `listn: ":80"`}, "", "http.listn: unknown key"},
		{"unknown key in list item", [2]string{"    register: true", "    regster: true"}, "", "trunks[0].regster: unknown key"},
		{"type error", [2]string{}, "limits:\n  max_calls: lots\n", "limits.max_calls: cannot unmarshal"},
		{"bad listen", [2]string{`listen: "127.0.0.1:0"`, `listen: "nohost"`}, "", `http.listen: "nohost": want host:port`},
		{"bad public url", [2]string{`public_url: "http://localhost:8080"`, `public_url: "localhost"`}, "", "http.public_url:"},
		{"bad origin", [2]string{`"https://shop.example.com"`, `"shop.example.com/x"`}, "", "http.allowed_origins[0]:"},
		{"trunk uri scheme", [2]string{`uri: "sip:pbx.example.com:5060"`, `uri: "pbx.example.com:5060"`}, "", `trunks[0].uri: missing scheme "sip:"`},
		{"trunk transport", [2]string{"    register: true", "    register: true\n    transport: sctp"}, "", `trunks[0].transport: "sctp" is not one of`},
		{"trunk codec", [2]string{"    register: true", "    register: true\n    codecs: [G729]"}, "", `trunks[0].codecs[0]: unknown codec "G729"`},
		{"trunk cidr", [2]string{"    register: true", "    register: true\n    allow_inbound_from: [\"10.0.0.0/33\"]"}, "", "trunks[0].allow_inbound_from[0]:"},
		{"symmetric rtp open to all", [2]string{"    register: true", "    register: true\n    symmetric_rtp: true\n    allow_inbound_from: [\"0.0.0.0/0\"]"}, "", "trunks[0].symmetric_rtp: allow_inbound_from[0] \"0.0.0.0/0\" admits every address"},
		{"register without user", [2]string{"    username: segue\n", ""}, "", "trunks[0].username: required when register is true"},
		{"missing env", [2]string{"${SEGUE_TEST_PW}", "${SEGUE_MISSING}"}, "", "trunks[0].password: environment variable SEGUE_MISSING is not set"},
		{"queue unknown trunk", [2]string{"    trunk: pbx", "    trunk: nope"}, "", `queues[0].trunk: unknown trunk "nope"`},
		{"queue dial", [2]string{`dial: "sip:600@pbx.example.com"`, `dial: "600"`}, "", `queues[0].dial: missing scheme "sip:"`},
		{"agent unknown queue", [2]string{"queues: [support]", "queues: [support, sales]"}, "", `agents[0].queues[1]: unknown queue "sales"`},
		{"agent hash", [2]string{"$2a$04$3pRDyrkIGqD7SIbEJ8P4XOaFFDCZ2tz2nIq1HdyeqzFbWDUwFpYCa", "plaintext"}, "", "agents[0].password_hash: not a bcrypt hash"},
		{"agent phone", [2]string{`phone: "sip:1001@pbx.example.com"`, `phone: "1001"`}, "", `agents[0].phone: missing scheme "sip:"`},
		{"sip listen", [2]string{}, "sip:\n  listen: [\"udp:nowhere\"]\n", "sip.listen[0]:"},
		{"rtp range", [2]string{}, "sip:\n  rtp_port_range: [3000, 2000]\n", "sip.rtp_port_range:"},
		{"webrtc turn", [2]string{}, "webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n", "webrtc.ice_servers[0].urls[0]: TURN server needs a secret (coturn use-auth-secret) or a username and credential"},
		{"remote networks", [2]string{}, "webrtc:\n  allowed_remote_networks: [\"10.0.0.0/8\", \"nope\"]\n", `webrtc.allowed_remote_networks[1]: "nope" is not a CIDR prefix`},
		{"remote loopback", [2]string{}, "webrtc:\n  allowed_remote_networks: [\"127.0.0.0/8\"]\n", `webrtc.allowed_remote_networks[0]: "127.0.0.0/8" reaches loopback, which is allowed only with loopback_candidates: true`},
		{"local ips", [2]string{}, "webrtc:\n  ips: [\"eth0\"]\n", `webrtc.ips[0]: "eth0" is not a CIDR prefix or an IP address`},
		{"opus complexity word", [2]string{}, "webrtc:\n  opus_complexity: fast\n", `webrtc.opus_complexity: "fast" is not auto or a whole number within 1-10`},
		{"opus complexity range", [2]string{}, "webrtc:\n  opus_complexity: 11\n", `webrtc.opus_complexity: "11" is not auto or a whole number within 1-10`},
		{"store driver", [2]string{}, "store:\n  driver: mysql\n", `store.driver: "mysql" is not one of`},
		{"negative limit", [2]string{}, "limits:\n  max_calls: -1\n", "limits.max_calls: must be positive"},
		{"log level", [2]string{}, "log:\n  level: loud\n", `log.level: "loud"`},
		{"queue voice", [2]string{`dial: "sip:600@pbx.example.com"`, "dial: \"sip:600@pbx.example.com\"\n    voice: sometimes"}, "", `queues[0].voice: "sometimes" is not one of always, after_accept, off`},
		{"negative calls per ip", [2]string{}, "limits:\n  calls_per_ip_per_hour: -1\n", "limits.calls_per_ip_per_hour: must not be negative"},
		{"negative calls per conversation", [2]string{}, "limits:\n  calls_per_conversation_per_hour: -2\n", "limits.calls_per_conversation_per_hour: must not be negative"},
		{"calls per ip type", [2]string{}, "limits:\n  calls_per_ip_per_hour: many\n", "limits.calls_per_ip_per_hour: cannot unmarshal"},
		{"queue video", [2]string{`dial: "sip:600@pbx.example.com"`, "dial: \"sip:600@pbx.example.com\"\n    video: later"}, "", `queues[0].video: "later" is not one of always, after_accept, off`},
		{"negative peers per ip", [2]string{}, "limits:\n  max_peers_per_ip: -1\n", "limits.max_peers_per_ip: must be positive"},
		{"negative peer starts", [2]string{}, "limits:\n  peer_starts_per_ip_per_minute: -5\n", "limits.peer_starts_per_ip_per_minute: must be positive"},
		{"negative scheduler lag", [2]string{}, "limits:\n  max_scheduler_lag: -5ms\n", "limits.max_scheduler_lag: -5ms is negative"},
		{"scheduler lag type", [2]string{}, "limits:\n  max_scheduler_lag: soon\n", "limits.max_scheduler_lag: cannot unmarshal"},
		{"cpu percent over 100", [2]string{}, "limits:\n  max_cpu_percent: 120\n", "limits.max_cpu_percent: 120 is not between 0 (off) and 100"},
		{"negative media lateness", [2]string{}, "limits:\n  max_media_late_percent: -1\n", "limits.max_media_late_percent: -1 is not between 0 (off) and 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := validYAML
			if tt.replace[0] != "" {
				if !strings.Contains(doc, tt.replace[0]) {
					t.Fatalf("test setup: %q not in the base config", tt.replace[0])
				}
				doc = strings.Replace(doc, tt.replace[0], tt.replace[1], 1)
			}
			doc += tt.append
			_, err := ParseConfig([]byte(doc), testEnv)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n%v\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigReportsEveryProblemAtOnce(t *testing.T) {
	doc := strings.NewReplacer(`listen: "127.0.0.1:0"`, `listn: ":80"`,
		`uri: "sip:pbx.example.com:5060"`, `uri: "pbx.example.com"`,
		"queues: [support]", "queues: [sales]").Replace(validYAML)
	doc += "agents2: []\n"
	_, err := ParseConfig([]byte(doc), testEnv)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"http.listn: unknown key", "agents2: unknown key", `trunks[0].uri: missing scheme "sip:"`, `agents[0].queues[0]: unknown queue "sales"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestParseConfigDuplicatesAndSecrets(t *testing.T) {
	doc := strings.Replace(validYAML, "identity:", `  - id: alice
    password_hash: "$2a$04$3pRDyrkIGqD7SIbEJ8P4XOaFFDCZ2tz2nIq1HdyeqzFbWDUwFpYCa"
    queues: [support]
identity:`, 1)
	_, err := ParseConfig([]byte(doc), env(map[string]string{"SEGUE_TEST_PW": "x", "SEGUE_TEST_SECRET": "short"}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`agents[1].id: duplicate agent "alice"`, "identity.secret: too short"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestParseConfigEmptyAndBroken(t *testing.T) {
	if _, err := ParseConfig([]byte(""), testEnv); err == nil || !strings.Contains(err.Error(), "queues: at least one queue is required") {
		t.Fatalf("empty file: %v", err)
	}
	if _, err := ParseConfig([]byte("http: [unclosed"), testEnv); err == nil || !strings.Contains(err.Error(), "config:") {
		t.Fatalf("broken YAML: %v", err)
	}
}

// FuzzParseConfig runs the config loader (LoadConfig is ParseConfig on
// the file's bytes) on arbitrary YAML: it never panics, and what it
// accepts stays valid.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add(configs.Example)
	f.Add([]byte("http:\n  listen: [1, 2]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, testEnv)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		if err != nil {
			return
		}
		// What the loader accepts, New accepts too (it validates again),
		// and the start-up checks run on it.
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v", err)
		}
		_ = cfg.Warnings()
		_ = cfg.HoldsSecrets()
	})
}

// TestLoadAdmissionDefaults: limits.max_scheduler_lag is 20ms when absent
// and off when 0; limits.max_cpu_percent is off unless set;
// limits.max_media_late_percent is 10 when absent and off when 0.
func TestLoadAdmissionDefaults(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		lag  time.Duration
		cpu  int
		late int
	}{
		{"", 20 * time.Millisecond, 0, 10},
		{"limits:\n  max_scheduler_lag: 0s\n  max_media_late_percent: 0\n", 0, 0, 0},
		{"limits:\n  max_scheduler_lag: 50ms\n  max_cpu_percent: 85\n  max_media_late_percent: 3\n", 50 * time.Millisecond, 85, 3},
	} {
		cfg, err := ParseConfig([]byte(validYAML+tc.yaml), testEnv)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := cfg.Limits.maxSchedulerLag(); got != tc.lag || cfg.Limits.MaxCPUPercent != tc.cpu {
			t.Errorf("%q: max_scheduler_lag %v, max_cpu_percent %d, want %v and %d", tc.yaml, got, cfg.Limits.MaxCPUPercent, tc.lag, tc.cpu)
		}
		if got := cfg.Limits.maxMediaLatePercent(); got != tc.late {
			t.Errorf("%q: max_media_late_percent %d, want %d", tc.yaml, got, tc.late)
		}
	}
}
