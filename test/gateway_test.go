//go:build e2e

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/segue-rtc/segue/test/peers"
)

// Agents in every test config, with their passwords.
var agentPasswords = map[string]string{
	"alice": "alice-secret-pw",
	"bob":   "bob-secret-pw",
	"sam":   "sam-secret-pw",
}

var (
	hashesOnce sync.Once
	hashes     map[string]string
	hashesErr  error
)

// passwordHashes returns bcrypt hashes of agentPasswords, made once.
func passwordHashes(t testing.TB) map[string]string {
	t.Helper()
	hashesOnce.Do(func() {
		hashes = map[string]string{}
		for id, pw := range agentPasswords {
			h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
			if err != nil {
				hashesErr = err
				return
			}
			hashes[id] = string(h)
		}
	})
	if hashesErr != nil {
		t.Fatalf("bcrypt: %v", hashesErr)
	}
	return hashes
}

// gateway is one segue process under test, started from a config written
// into a temp dir. Restart keeps the port, the database and the files.
type gateway struct {
	t      testing.TB
	dir    string
	config string
	addr   string // 127.0.0.1:port
	URL    string // http://127.0.0.1:port
	// AdminURL is the admin listener (http.admin_listen): /metrics, the
	// detailed /readyz and /debug/pprof.
	AdminURL string
	// SIPAddr is the gateway's UDP SIP listener, 127.0.0.1:port.
	SIPAddr string
	// RTPRange is the gateway's sip.rtp_port_range, both ends included.
	RTPRange [2]int
	// ICERange is its webrtc.udp_port_range, both ends included.
	ICERange [2]int

	log peers.SyncBuffer // output of every run, in order

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
}

// gatewayOptions changes the config of a test gateway.
type gatewayOptions struct {
	maxFrameBytes  int
	maxUploadBytes int
	extraOrigins   []string
	identitySecret string
	newChatsPerMin int
	// maxChats is how many chats Alice and Bob each take at once.
	maxChats int
	// maxVideoSessions caps the conversations with video at once; 0 keeps
	// the gateway's default.
	maxVideoSessions int
	// maxPeersPerIP caps the customer peer connections from one address
	// (every test customer is 127.0.0.1); 0 keeps the gateway's default.
	maxPeersPerIP int
	// supervisor adds Sam, a supervisor of every queue (agents[].role).
	supervisor bool
	// voice gives the gateway SIP trunks, queues routed through them and
	// Alice's desk phone. Without queues there is one, support, and no trunk.
	voice voiceConfig
	// Extra YAML lines, already indented for where they go: under sip:,
	// in every trunk entry, in every queue entry, and under limits:.
	sipYAML, trunkYAML, queueYAML, limitsYAML string
	// remoteNetworks is webrtc.allowed_remote_networks; nil gives the
	// loopback test mode's 127.0.0.0/8.
	remoteNetworks []string
	// httpYAML and webrtcYAML go under http: and webrtc:.
	httpYAML, webrtcYAML string
	// integrationsYAML is the integrations: section, indented under it.
	integrationsYAML string
	// topYAML holds whole top-level sections (such as clock:), added last.
	topYAML string
	// storeYAML replaces store.driver and store.dsn (the gateway's own
	// SQLite file) when set.
	storeYAML string
	// clusterYAML is a whole cluster: section, appended last.
	clusterYAML string
	// logLevel is log.level; "" is debug.
	logLevel string
}

// withSupervisor adds Sam (password agentPasswords["sam"]), a supervisor
// of every queue, to the agents.
func withSupervisor() func(*gatewayOptions) {
	return func(o *gatewayOptions) { o.supervisor = true }
}

// withRemoteNetworks sets webrtc.allowed_remote_networks (the loopback
// test mode allows 127.0.0.0/8 otherwise).
func withRemoteNetworks(networks ...string) func(*gatewayOptions) {
	return func(o *gatewayOptions) { o.remoteNetworks = networks }
}

// withSectionYAML adds raw config lines under http: and webrtc:,
// indented for where they go.
func withSectionYAML(httpYAML, webrtcYAML string) func(*gatewayOptions) {
	return func(o *gatewayOptions) {
		o.httpYAML += httpYAML
		o.webrtcYAML += webrtcYAML
	}
}

// withIntegrationsYAML adds lines under integrations:, indented for it.
func withIntegrationsYAML(y string) func(*gatewayOptions) {
	return func(o *gatewayOptions) { o.integrationsYAML += y }
}

// withYAML adds raw config lines (see gatewayOptions) for keys the other
// options do not cover.
func withYAML(sipYAML, trunkYAML, queueYAML, limitsYAML string) func(*gatewayOptions) {
	return func(o *gatewayOptions) {
		o.sipYAML += sipYAML
		o.trunkYAML += trunkYAML
		o.queueYAML += queueYAML
		o.limitsYAML += limitsYAML
	}
}

// voiceTrunk is a desk phone or PBX the gateway may call.
type voiceTrunk struct {
	name string
	addr string // host:port
}

// voiceQueue routes a queue's calls through a trunk to a number.
type voiceQueue struct {
	name, trunk, dial string
}

// voiceConfig is what the voice tests set up: trunks, queues and desk phone.
type voiceConfig struct {
	trunks     []voiceTrunk
	queues     []voiceQueue
	alicePhone string // SIP URI of Alice's desk phone, or ""
	iceServers string // YAML list for webrtc.ice_servers, or ""
	origins    []string
	sipPort    int // the gateway's SIP port on 127.0.0.1; 0 picks one
}

// withVoice sets the gateway up with vc's trunks, queues and desk phone,
// and allows vc's origins.
func withVoice(vc voiceConfig) func(*gatewayOptions) {
	return func(o *gatewayOptions) {
		o.voice = vc
		o.extraOrigins = append(o.extraOrigins, vc.origins...)
	}
}

// startVoiceGateway starts a gateway with vc's trunks and queues.
func startVoiceGateway(t *testing.T, vc voiceConfig, opts ...func(*gatewayOptions)) *gateway {
	t.Helper()
	return startGateway(t, append([]func(*gatewayOptions){withVoice(vc)}, opts...)...)
}

// startGateway writes a config and starts segue serve; it stops the process
// when the test ends and prints its config and log if the test failed.
// WebRTC uses loopback candidates, so browsers and pion peers on this
// machine reach it without a network.
func startGateway(t testing.TB, opts ...func(*gatewayOptions)) *gateway {
	t.Helper()
	o := gatewayOptions{maxFrameBytes: 65536, maxUploadBytes: 4 << 20, newChatsPerMin: 1000, maxChats: 4}
	for _, f := range opts {
		f(&o)
	}
	dir := t.TempDir()
	port := peers.FreeTCPPort(t, "127.0.0.1")
	g := &gateway{
		t:      t,
		dir:    dir,
		config: filepath.Join(dir, "segue.yaml"),
		addr:   fmt.Sprintf("127.0.0.1:%d", port),
	}
	g.URL = "http://" + g.addr
	g.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", peers.FreeTCPPort(t, "127.0.0.1"))
	cfg := g.configYAML(t, o)
	if err := os.WriteFile(g.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("segue config:\n%s\nsegue log:\n%s", cfg, g.Log())
		}
	})
	g.Start()
	return g
}

func (g *gateway) configYAML(t testing.TB, o gatewayOptions) string {
	h := passwordHashes(t)
	var b strings.Builder
	origins := append([]string{g.URL}, o.extraOrigins...)
	quoted := make([]string, len(origins))
	for i, s := range origins {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	sipPort := o.voice.sipPort
	if sipPort == 0 {
		sipPort = peers.FreeUDPPort(t, "127.0.0.1")
	}
	g.SIPAddr = fmt.Sprintf("127.0.0.1:%d", sipPort)
	// ICE and RTP ports from ranges of their own, away from other gateways;
	// 400 ICE ports cover the default limits (200 calls, 50 video
	// sessions at two peer connections each), as validation checks.
	udpLo := 20000 + 400*rand.IntN(37)
	rtpLo := 36000 + 2*rand.IntN(6000)
	g.RTPRange = [2]int{rtpLo, rtpLo + 199}
	g.ICERange = [2]int{udpLo, udpLo + 399}
	storeYAML := o.storeYAML
	if storeYAML == "" {
		storeYAML = fmt.Sprintf("  driver: sqlite\n  dsn: %q\n", filepath.Join(g.dir, "segue.db"))
	}
	fmt.Fprintf(&b, `http:
  listen: %q
  public_url: %q
  allowed_origins: [%s]
  admin_listen: %q
%sstore:
%s  files_dir: %q
  max_upload_bytes: %d
webrtc:
  loopback_candidates: true
  udp_port_range: [%d, %d]
`, g.addr, g.URL, strings.Join(quoted, ", "), strings.TrimPrefix(g.AdminURL, "http://"), o.httpYAML,
		storeYAML, filepath.Join(g.dir, "files"), o.maxUploadBytes, udpLo, udpLo+399)
	// Browsers and pion customers on this machine offer 127.0.0.1: the
	// loopback test mode allows loopback candidates explicitly.
	remote := o.remoteNetworks
	if remote == nil {
		remote = []string{"127.0.0.0/8"}
	}
	nets := make([]string, len(remote))
	for i, n := range remote {
		nets[i] = fmt.Sprintf("%q", n)
	}
	fmt.Fprintf(&b, "  allowed_remote_networks: [%s]\n", strings.Join(nets, ", "))
	b.WriteString(o.webrtcYAML)
	if o.voice.iceServers != "" {
		fmt.Fprintf(&b, "  ice_servers:\n%s", o.voice.iceServers)
	}
	fmt.Fprintf(&b, `sip:
  listen: ["udp:127.0.0.1:%d"]
  rtp_port_range: [%d, %d]
`, sipPort, rtpLo, rtpLo+199)
	b.WriteString(o.sipYAML)
	if len(o.voice.trunks) > 0 {
		b.WriteString("trunks:\n")
	}
	for _, tr := range o.voice.trunks {
		fmt.Fprintf(&b, "  - name: %s\n    uri: \"sip:%s\"\n    codecs: [PCMU, PCMA]\n    allow_inbound_from: [\"127.0.0.1/32\"]\n", tr.name, tr.addr)
		b.WriteString(o.trunkYAML)
	}
	queues := o.voice.queues
	if len(queues) == 0 {
		queues = []voiceQueue{{name: "support"}}
	}
	b.WriteString("queues:\n")
	names := make([]string, len(queues))
	for i, q := range queues {
		fmt.Fprintf(&b, "  - name: %s\n", q.name)
		if q.trunk != "" {
			fmt.Fprintf(&b, "    trunk: %s\n", q.trunk)
		}
		if q.dial != "" {
			fmt.Fprintf(&b, "    dial: %q\n", q.dial)
		}
		b.WriteString(o.queueYAML)
		names[i] = q.name
	}
	phone := ""
	if o.voice.alicePhone != "" {
		phone = fmt.Sprintf("    phone: %q\n", o.voice.alicePhone)
	}
	queueList := strings.Join(names, ", ")
	fmt.Fprintf(&b, `agents:
  - id: alice
    name: "Alice"
    password_hash: %q
%s    queues: [%s]
    max_chats: %d
  - id: bob
    name: "Bob"
    password_hash: %q
    queues: [%s]
    max_chats: %d
limits:
  new_chats_per_ip_per_minute: %d
  max_frame_bytes: %d
`, h["alice"], phone, queueList, o.maxChats, h["bob"], queueList, o.maxChats, o.newChatsPerMin, o.maxFrameBytes)
	if o.supervisor {
		// Appended as a list entry of agents, which limits: closed.
		cfg := b.String()
		i := strings.LastIndex(cfg, "limits:\n")
		b.Reset()
		fmt.Fprintf(&b, "%s  - id: sam\n    name: \"Sam\"\n    password_hash: %q\n    queues: [%s]\n    role: supervisor\n%s",
			cfg[:i], h["sam"], queueList, cfg[i:])
	}
	b.WriteString(o.limitsYAML)
	if !strings.Contains(o.limitsYAML, "max_scheduler_lag:") {
		// The test machines are shared: admission by scheduler lag at its
		// default would refuse calls a loaded machine still carries.
		// TestCallsRefusedPastCapacity covers the check itself.
		b.WriteString("  max_scheduler_lag: 250ms\n")
	}
	if !strings.Contains(o.limitsYAML, "max_media_late_percent:") {
		// Likewise for the media clock's lateness, which a loaded shared
		// machine pushes past its default while the calls still carry.
		b.WriteString("  max_media_late_percent: 0\n")
	}
	if o.maxVideoSessions > 0 {
		fmt.Fprintf(&b, "  max_video_sessions: %d\n", o.maxVideoSessions)
	}
	if o.maxPeersPerIP > 0 {
		fmt.Fprintf(&b, "  max_peers_per_ip: %d\n", o.maxPeersPerIP)
	}
	if o.logLevel == "" {
		o.logLevel = "debug"
	}
	fmt.Fprintf(&b, "log:\n  level: %s\n", o.logLevel)
	if o.identitySecret != "" {
		fmt.Fprintf(&b, "identity:\n  secret: %q\n", o.identitySecret)
	}
	if o.integrationsYAML != "" {
		b.WriteString("integrations:\n" + o.integrationsYAML)
	}
	b.WriteString(o.topYAML)
	b.WriteString(o.clusterYAML)
	return b.String()
}

// Start starts the process and waits until /readyz answers 200.
func (g *gateway) Start() {
	g.t.Helper()
	cmd := exec.Command(segueBin, "serve", "--config", g.config)
	cmd.Dir = g.dir
	cmd.Stdout, cmd.Stderr = &g.log, &g.log
	if err := cmd.Start(); err != nil {
		g.t.Fatalf("start segue: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			g.t.Fatalf("segue exited before it was ready: %v", cmd.ProcessState)
		default:
		}
		res, err := http.Get(g.URL + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatal("segue was not ready within 30 s")
}

// Stop sends SIGTERM and waits for the process to exit, and logs how long
// that took; it fails the test and sends SIGKILL after 20 s.
func (g *gateway) Stop() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		g.t.Logf("segue exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		g.t.Errorf("segue did not exit within 20 s of SIGTERM")
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill ends the process with SIGKILL, as a crash would: nothing is
// hung up, flushed or closed.
func (g *gateway) Kill() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart stops the gateway and starts it again on the same port and data.
func (g *gateway) Restart() {
	g.t.Helper()
	g.Stop()
	g.Start()
}

// Log returns what the gateway printed so far.
func (g *gateway) Log() string { return g.log.String() }

// Pid is the running process's id, 0 when it is stopped.
func (g *gateway) Pid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

// Origin is the origin browsers use for this gateway.
func (g *gateway) Origin() string { return g.URL }

// WSURL is the WebSocket endpoint.
func (g *gateway) WSURL() string { return "ws://" + g.addr + "/api/v1/ws" }

// client is an HTTP client of the API, as a customer (bearer token) or an
// agent (session cookie), sending the gateway's own Origin unless told.
type client struct {
	t      testing.TB
	g      *gateway
	http   *http.Client
	token  string
	origin string
}

func (g *gateway) client(t testing.TB) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, g: g, http: &http.Client{Jar: jar, Timeout: 30 * time.Second}, origin: g.Origin()}
}

// do sends a request and returns the status and body.
func (c *client) do(method, path string, body io.Reader, contentType string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, c.g.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res.StatusCode, b
}

// json sends v as JSON and decodes a JSON answer into out (if not nil). It
// fails the test unless the status is want.
func (c *client) json(method, path string, v any, want int, out any) {
	c.t.Helper()
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	status, b := c.do(method, path, body, "application/json")
	if status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// API objects, as far as the tests need them.
type conversation struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Queue    string `json:"queue"`
	Customer struct {
		Name     string `json:"name"`
		Verified bool   `json:"verified"`
	} `json:"customer"`
	Agent *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"agent"`
	LastSeq int64 `json:"last_seq"`
	// Voice: the customer may start a call now.
	Voice bool `json:"voice"`
	// Video: the customer may start video now.
	Video bool `json:"video"`
}

type message struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	From           struct {
		Role string `json:"role"`
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"from"`
	Kind string `json:"kind"`
	Text string `json:"text"`
	File *struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Type  string `json:"type"`
		Size  int64  `json:"size"`
		Image bool   `json:"image"`
	} `json:"file"`
}

// newConversation starts a conversation as a customer and returns a client
// that holds its token.
func (g *gateway) newConversation(t testing.TB, name string) (*client, conversation) {
	t.Helper()
	c := g.client(t)
	var out struct {
		Conversation conversation `json:"conversation"`
		Token        string       `json:"token"`
	}
	c.json(http.MethodPost, "/api/v1/conversations", map[string]string{"name": name, "queue": "support"}, http.StatusCreated, &out)
	if out.Token == "" || out.Conversation.ID == "" {
		t.Fatalf("conversation without token or id: %+v", out)
	}
	c.token = out.Token
	return c, out.Conversation
}

// login returns a client holding an agent's session cookie.
func (g *gateway) login(t testing.TB, id string) *client {
	t.Helper()
	c := g.client(t)
	c.json(http.MethodPost, "/api/v1/agent/login", map[string]string{"id": id, "password": agentPasswords[id]}, http.StatusOK, nil)
	return c
}

// cookieHeader is the Cookie header an agent client would send.
func (c *client) cookieHeader() string {
	u, err := url.Parse(c.g.URL)
	if err != nil {
		c.t.Fatal(err)
	}
	var parts []string
	for _, ck := range c.http.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

// messages lists a conversation's messages through the API.
func (c *client) messages(convID string) []message {
	c.t.Helper()
	var out struct {
		Messages []message `json:"messages"`
	}
	c.json(http.MethodGet, "/api/v1/conversations/"+convID+"/messages?after=0", nil, http.StatusOK, &out)
	return out.Messages
}

// waitFor polls cond every 50 ms until it returns nil or 30 s pass.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, errors.Join(errors.New("timed out after 30 s"), err))
}
