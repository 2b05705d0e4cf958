//go:build e2e

package test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gopkg.in/yaml.v3"

	"github.com/segue-rtc/segue/sip/demophone"
	"github.com/segue-rtc/segue/test/peers"
)

// startShippedGateway runs segue serve on configs/segue.yaml as shipped
// (what make run uses: the demo agent and password, the demo phone as
// trunk and queue number), with only its addresses, ports and paths moved
// to free ones in a temp dir, and the loopback ICE the other tests use.
func startShippedGateway(t *testing.T) *gateway {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join("..", "configs", "segue.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(shipped, &doc); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := &gateway{t: t, dir: dir, config: filepath.Join(dir, "segue.yaml"),
		addr: fmt.Sprintf("127.0.0.1:%d", peers.FreeTCPPort(t, "127.0.0.1"))}
	g.URL = "http://" + g.addr
	g.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", peers.FreeTCPPort(t, "127.0.0.1"))
	g.SIPAddr = fmt.Sprintf("127.0.0.1:%d", peers.FreeUDPPort(t, "127.0.0.1"))
	phone := fmt.Sprintf("127.0.0.1:%d", peers.FreeUDPPort(t, "127.0.0.1"))
	udpLo, rtpLo := 20000+400*rand.IntN(37), 36000+2*rand.IntN(6000)
	g.RTPRange = [2]int{rtpLo, rtpLo + 199}
	for _, s := range []struct{ path, value string }{
		{"http.listen", g.addr},
		{"http.public_url", g.URL},
		{"http.allowed_origins", fmt.Sprintf("[%q]", g.URL)},
		{"http.admin_listen", strings.TrimPrefix(g.AdminURL, "http://")},
		{"store.dsn", filepath.Join(dir, "segue.db")},
		{"store.files_dir", filepath.Join(dir, "files")},
		{"webrtc.udp_port_range", fmt.Sprintf("[%d, %d]", udpLo, udpLo+399)},
		{"webrtc.loopback_candidates", "true"},
		{"webrtc.allowed_remote_networks", `["127.0.0.0/8"]`},
		{"sip.listen", fmt.Sprintf(`["udp:%s"]`, g.SIPAddr)},
		{"sip.rtp_port_range", fmt.Sprintf("[%d, %d]", rtpLo, rtpLo+199)},
		{"trunks.0.uri", "sip:" + phone},
		{"queues.0.dial", "sip:600@" + phone},
		{"demo_phone.listen", phone},
		{"demo_phone.rtp_port_range", fmt.Sprintf("[%d, %d]", rtpLo+200, rtpLo+219)},
		{"log.level", "debug"},
	} {
		setYAML(t, doc.Content[0], s.path, s.value)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.config, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("segue config:\n%s\nsegue log:\n%s", out, g.Log())
		}
	})
	g.Start()
	return g
}

// setYAML sets the value at a dotted path (list indexes as numbers) of a
// mapping node, adding the last key when it is missing; value is YAML.
func setYAML(t *testing.T, n *yaml.Node, path, value string) {
	t.Helper()
	var v yaml.Node
	if err := yaml.Unmarshal([]byte(value), &v); err != nil || len(v.Content) == 0 {
		v = yaml.Node{Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: value}}}
	}
	val := v.Content[0]
	if val.Kind == yaml.ScalarNode && !strings.HasPrefix(value, "[") && value != "true" {
		val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	}
	keys := strings.Split(path, ".")
	for i, k := range keys {
		last := i == len(keys)-1
		switch n.Kind {
		case yaml.SequenceNode:
			var idx int
			if _, err := fmt.Sscan(k, &idx); err != nil || idx >= len(n.Content) {
				t.Fatalf("%s: no item %s", path, k)
			}
			if last {
				n.Content[idx] = val
				return
			}
			n = n.Content[idx]
		case yaml.MappingNode:
			found := false
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == k {
					if last {
						n.Content[j+1] = val
						return
					}
					n, found = n.Content[j+1], true
					break
				}
			}
			if !found {
				if !last {
					t.Fatalf("%s: no key %s in the shipped configuration", path, k)
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, val)
				return
			}
		default:
			t.Fatalf("%s: %s is not a mapping or list", path, k)
		}
	}
}

// TestQuickTourDemoPhone scripts the README's quick tour on the shipped
// configuration: the customer opens the demo site and chats, Alice logs
// in with the demo password and accepts, and the customer presses the
// mic. The call goes through the real SIP leg to the demo phone: the
// customer hears its chime, then its own microphone (1 kHz) echoed back,
// and Alice's console marks the call as the demo phone's.
func TestQuickTourDemoPhone(t *testing.T) {
	g := startShippedGateway(t)

	customer := newVoiceTab(t, "customer")
	customer.do(chromedp.Navigate(g.URL + "/"))
	customer.click("widget-open")
	waitJS[bool](customer, "the chat panel", fn("", `const p = q('chat-panel'); return !!p && !p.hidden;`))
	customer.send("Hello, is anyone there?")
	customer.waitMessage("Hello, is anyone there?")
	convID := customer.widgetConversation()

	agent := newVoiceTab(t, "console alice")
	agent.do(chromedp.Navigate(g.URL + "/console"))
	agent.fill("login-id", "alice")
	agent.fill("login-password", "segue-demo")
	agent.click("login-submit")
	agent.waitConnected()
	agent.acceptConversation(convID)
	agent.send("Hi, Alice here. Press the microphone to talk.")
	customer.waitMessage("Hi, Alice here. Press the microphone to talk.")

	waitJS[bool](customer, "the mic button", fn("", `const b = q('voice-start'); return !!b && !b.hidden && !b.disabled;`))
	customer.click("voice-start")
	customer.waitCall("connected")
	greeting := customer.measureHeard(500)
	t.Logf("during the greeting the customer heard %.0f Hz at %.1f dBFS", greeting.Freq, greeting.DB)
	near := false
	for _, hz := range demophone.ChimeHz {
		near = near || math.Abs(greeting.Freq-hz) <= 12
	}
	if !near || greeting.DB < -40 {
		t.Errorf("during the greeting the customer heard %.0f Hz at %.1f dBFS, want one of the chime's notes %v", greeting.Freq, greeting.DB, demophone.ChimeHz)
	}
	waitJS[bool](agent, "the console's demo phone badge", fn("", `const b = q('demo-phone'); return !!b && !b.hidden && b.textContent === 'demo phone';`))

	// The chime lasts 1.8 s; then the demo phone echoes the customer's microphone.
	time.Sleep(1500 * time.Millisecond)
	expectHeard(t, "the customer (echo)", customer.measureHeard(1500), voiceMicHz, -40, -1)

	customer.click("hangup")
	customer.waitCall("ended")
	customer.send("Thanks, that worked.")
	agent.waitMessage("Thanks, that worked.")
}
