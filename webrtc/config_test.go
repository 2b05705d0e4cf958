package webrtc

import (
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// TestEphemeralTURNCredential: a server with a secret makes TURN REST API
// credentials (draft-uberti-behave-turn-rest-00 §2.2), as coturn's
// use-auth-secret checks them; a server without one keeps its static
// credential.
func TestEphemeralTURNCredential(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := ICEServer{URLs: []string{"turn:t.example.com"}, Secret: "0123456789abcdef-turn", TTL: time.Hour}
	user, cred, exp := s.Ephemeral("c_abc", now)
	// The expected credential was computed apart from this code:
	// base64(HMAC-SHA1("0123456789abcdef-turn", "1700003600:c_abc")).
	if user != "1700003600:c_abc" || cred != "OxtRIDDhVRvNL8GO9iImTyKuJy8=" || !exp.Equal(time.Unix(1_700_003_600, 0)) {
		t.Fatalf("Ephemeral = %q %q %v", user, cred, exp)
	}
	s.TTL = 0
	if user, _, _ := s.Ephemeral("x", now); user != "1700014400:x" {
		t.Fatalf("default ttl: %q", user)
	}
	static := ICEServer{URLs: []string{"turn:t.example.com"}, Username: "u", Credential: "c"}
	if user, cred, exp := static.Ephemeral("c_abc", now); user != "u" || cred != "c" || !exp.IsZero() {
		t.Fatalf("static: %q %q %v", user, cred, exp)
	}
}

// TestTURNServerConfig: a TURN server needs a secret or a static
// credential, not both; the secret's ttl is bounded.
func TestTURNServerConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    ICEServer
		want string
	}{
		{"secret", ICEServer{URLs: []string{"turn:t"}, Secret: "0123456789abcdef"}, ""},
		{"static", ICEServer{URLs: []string{"turn:t"}, Username: "u", Credential: "c"}, ""},
		{"stun", ICEServer{URLs: []string{"stun:t"}}, ""},
		{"neither", ICEServer{URLs: []string{"turn:t"}}, "ice_servers[0].urls[0]: TURN server needs a secret"},
		{"both", ICEServer{URLs: []string{"turn:t"}, Secret: "0123456789abcdef", Username: "u", Credential: "c"}, "ice_servers[0].secret: give either"},
		{"short secret", ICEServer{URLs: []string{"turn:t"}, Secret: "short"}, "ice_servers[0].secret: too short"},
		{"short ttl", ICEServer{URLs: []string{"turn:t"}, Secret: "0123456789abcdef", TTL: 5 * time.Second}, "ice_servers[0].ttl: 5s is too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{ICEServers: []ICEServer{tc.s}}
			c.ApplyDefaults()
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestOpusComplexityConfig(t *testing.T) {
	for _, tc := range []struct {
		v     string
		fixed int
		want  string
	}{
		{"", 0, ""}, {"auto", 0, ""}, {"0", 0, ""}, {"1", 1, ""}, {"10", 10, ""},
		{"-1", 0, `opus_complexity: "-1" is not auto or a whole number within 1-10`},
		{"11", 0, `opus_complexity: "11" is not auto or a whole number within 1-10`},
		{"fast", 0, `opus_complexity: "fast" is not auto or a whole number within 1-10`},
		{"2.5", 0, `opus_complexity: "2.5" is not auto`},
	} {
		c := Config{OpusComplexity: tc.v}
		c.ApplyDefaults()
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.v, err)
			continue
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.v, err, tc.want)
			continue
		case tc.want != "":
			continue
		}
		e, err := New(Config{OpusComplexity: tc.v}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.opts.opusAuto; got != (tc.fixed == 0) {
			t.Errorf("%q: adaptive %v, want %v", tc.v, got, tc.fixed == 0)
		}
		want := cheapOpusEffort
		if tc.fixed != 0 {
			want = transcode.OpusEffort{Complexity: tc.fixed, FEC: true, PacketLoss: fixedOpusLoss}
		}
		if got := e.newOpusEffort().Effort(); got != want {
			t.Errorf("%q: a new peer's effort %+v, want %+v", tc.v, got, want)
		}
		e.Close()
	}
	c := Config{}
	c.ApplyDefaults()
	if c.OpusComplexity != OpusComplexityAuto {
		t.Errorf("default opus_complexity %q, want auto", c.OpusComplexity)
	}
}
