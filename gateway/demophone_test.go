package gateway

import (
	"strings"
	"testing"

	"github.com/segue-rtc/segue/configs"
)

// TestDemoPhoneConfig: the example configuration enables the demo phone
// and routes the support queue to it; a demo phone reachable from other
// machines, or sharing the gateway's RTP ports, is refused with its key.
func TestDemoPhoneConfig(t *testing.T) {
	cfg, err := ParseConfig(configs.Example, testEnv)
	if err != nil {
		t.Fatalf("the example configuration: %v", err)
	}
	if !cfg.DemoPhone.Enabled || cfg.DemoTrunk() != "demo" {
		t.Fatalf("the example's demo phone: enabled %v, trunk %q", cfg.DemoPhone.Enabled, cfg.DemoTrunk())
	}
	if q := cfg.Queues[0]; q.Trunk != "demo" || q.Dial == "" {
		t.Fatalf("the support queue does not dial the demo phone: %+v", q)
	}
	example := string(configs.Example)
	for _, tc := range []struct{ name, old, new, want string }{
		{"all interfaces", `listen: "127.0.0.1:5080"`, `listen: "0.0.0.0:5080"`,
			`demo_phone.listen: "0.0.0.0:5080": demophone: listen must be a loopback address`},
		{"public address", `listen: "127.0.0.1:5080"`, `listen: "192.0.2.1:5080"`,
			`demo_phone.listen: "192.0.2.1:5080": demophone: listen must be a loopback address`},
		{"rtp ports", "rtp_port_range: [21000, 21099]", "rtp_port_range: [20900, 21099]",
			"demo_phone.rtp_port_range: [20900, 21099] overlaps sip.rtp_port_range [20000, 20999]"},
		{"greeting", "greeting: chime", "greeting: loud", `demo_phone.greeting: "loud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(example, tc.old) {
				t.Fatalf("%q not in the example", tc.old)
			}
			_, err := ParseConfig([]byte(strings.Replace(example, tc.old, tc.new, 1)), testEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%v\nwant %q", err, tc.want)
			}
		})
	}
	off, err := ParseConfig([]byte(strings.Replace(example, "enabled: true ", "enabled: false", 1)), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if off.DemoTrunk() != "" {
		t.Errorf("a disabled demo phone still marks trunk %q", off.DemoTrunk())
	}
}
