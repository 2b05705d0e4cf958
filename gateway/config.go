package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/sip/demophone"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/webrtc"
)

// Config is the whole YAML file: each package owns its section and the
// gateway combines them.
type Config struct {
	HTTP     HTTPConfig        `yaml:"http"`
	Store    store.Config      `yaml:"store"`
	WebRTC   webrtc.Config     `yaml:"webrtc"`
	SIP      sip.Config        `yaml:"sip"`
	Trunks   []sip.TrunkConfig `yaml:"trunks"`
	Queues   []QueueConfig     `yaml:"queues"`
	Agents   []AgentConfig     `yaml:"agents"`
	Limits   LimitsConfig      `yaml:"limits"`
	Identity IdentityConfig    `yaml:"identity"`
	Log      LogConfig         `yaml:"log"`
	// DemoPhone is the embedded demo desk phone (demo_phone), which
	// answers calls on loopback with a greeting and an echo.
	DemoPhone demophone.Config `yaml:"demo_phone"`
	// Integrations are the API keys and webhooks of other systems.
	Integrations IntegrationsConfig `yaml:"integrations"`
	// Clock fixes the time opening hours are judged by, for tests and
	// demos (clock.now).
	Clock ClockConfig `yaml:"clock"`
	// Recording is how call recordings are written (recording.format);
	// queues[].recording says which calls are recorded.
	Recording RecordingConfig `yaml:"recording"`
	// Cluster joins this gateway to others sharing its store (optional).
	Cluster ClusterConfig `yaml:"cluster"`
}

// QueueConfig is one entry of "queues".
type QueueConfig struct {
	Name  string `yaml:"name"`
	Trunk string `yaml:"trunk"`
	// Dial is the PBX number rung for a voice call with no agent assigned.
	Dial string `yaml:"dial"`
	// OfferTimeout is how long, in seconds, a conversation is offered to one
	// agent before it moves to the next.
	OfferTimeout int `yaml:"offer_timeout"`
	// Voice says when the customer's widget may start a call in this
	// queue's conversations: VoiceAlways (the default), VoiceAfterAccept
	// (once an agent holds the conversation) or VoiceOff (never; no call
	// toward the customer either).
	Voice string `yaml:"voice"`
	// MaxWaiting caps the conversations waiting in this queue; past it a
	// new chat is refused with queue_full and the widget offers to leave
	// an e-mail and a message instead (default 200).
	MaxWaiting int `yaml:"max_waiting"`
	// Video says when the customer's widget may start video (camera or
	// screen) in this queue's conversations, with the same values as
	// Voice: VideoAlways (the default), VideoAfterAccept (once an agent
	// holds the conversation) or VideoOff (never; the agent's console
	// cannot join the conversation's media either).
	Video string `yaml:"video"`
	// Hours are the queue's opening hours; outside them the widget says
	// when the queue opens again and offers to leave a message. Nil: always
	// open.
	Hours *HoursConfig `yaml:"hours"`
	// Recording says which of this queue's voice calls the gateway
	// records: RecordingOff (the default), RecordingAlways (every call,
	// from the answer) or RecordingOnDemand (when the agent holding the
	// conversation starts it from the console). The customer's widget
	// shows when a call is recorded.
	Recording string `yaml:"recording"`
	// RecordingAnnouncement is AnnouncementTone to play a short tone to
	// both sides when a recording starts, or AnnouncementOff (the
	// default).
	RecordingAnnouncement string `yaml:"recording_announcement"`
	// CannedReplies are the queue's canned replies, offered to its agents
	// in the console's reply box after "/".
	CannedReplies []CannedReplyConfig `yaml:"canned_replies"`
	// WrapUpCodes are the codes an agent may choose when ending one of
	// the queue's conversations; the code is stored with the
	// conversation, exported and counted (segue_wrap_ups_total).
	WrapUpCodes []string `yaml:"wrap_up_codes"`
	// WrapUpRequired makes choosing one of WrapUpCodes a condition of
	// ending a conversation from the console.
	WrapUpRequired bool `yaml:"wrap_up_required"`
}

// Values of queues[].voice.
const (
	VoiceAlways      = "always"
	VoiceAfterAccept = "after_accept"
	VoiceOff         = "off"
)

// Values of queues[].video.
const (
	VideoAlways      = "always"
	VideoAfterAccept = "after_accept"
	VideoOff         = "off"
)

// AgentConfig is one entry of "agents".
type AgentConfig struct {
	ID           string   `yaml:"id"`
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"`
	Phone        string   `yaml:"phone"`
	Queues       []string `yaml:"queues"`
	// MaxChats overrides limits.max_chats_per_agent for this agent.
	MaxChats int `yaml:"max_chats"`
	// Role is RoleAgent (the default) or RoleSupervisor: a supervisor
	// also sees the live board of its queues, reads and reassigns their
	// conversations and listens to, whispers into or joins their calls
	// (docs/supervisors.md).
	Role string `yaml:"role"`
}

// Values of agents[].role.
const (
	RoleAgent      = "agent"
	RoleSupervisor = "supervisor"
)

// Supervisor reports whether the agent has the supervisor role.
func (a AgentConfig) Supervisor() bool { return a.Role == RoleSupervisor }

// LimitsConfig is the "limits" section; every limit is enforced.
type LimitsConfig struct {
	MaxCalls                  int   `yaml:"max_calls"`
	NewChatsPerIPPerMinute    int   `yaml:"new_chats_per_ip_per_minute"`
	MaxMessageBytes           int   `yaml:"max_message_bytes"`
	MaxFrameBytes             int64 `yaml:"max_frame_bytes"`
	MaxUploadsPerConversation int   `yaml:"max_uploads_per_conversation"`
	MaxChatsPerAgent          int   `yaml:"max_chats_per_agent"`
	MaxConversations          int   `yaml:"max_conversations"`
	MaxVideoSessions          int   `yaml:"max_video_sessions"`
	// MaxPeersPerIP caps the customer peer connections (calls and video)
	// open at once from one client address (an IPv6 /64), so that one
	// visitor cannot take every video session or port.
	MaxPeersPerIP int `yaml:"max_peers_per_ip"`
	// PeerStartsPerIPPerMinute caps how many customer peer connections one
	// client address (an IPv6 /64) may set up in any minute, so that
	// starting and stopping video in a loop cannot keep the gateway busy
	// building peers.
	PeerStartsPerIPPerMinute int `yaml:"peer_starts_per_ip_per_minute"`
	// CallsPerIPPerHour caps the calls customers start from one client
	// address (an IPv6 /64) in any hour; 0 is unlimited. Calls the agent or
	// the PBX places toward the customer do not count.
	CallsPerIPPerHour *int `yaml:"calls_per_ip_per_hour"`
	// CallsPerConversationPerHour caps the calls the customer starts in one
	// conversation in any hour; 0 is unlimited.
	CallsPerConversationPerHour *int `yaml:"calls_per_conversation_per_hour"`

	// AbandonedAfter ends a waiting conversation by itself once it has had
	// no customer socket, no agent and no message for this long.
	AbandonedAfter time.Duration `yaml:"abandoned_after"`
	// MessagesPerSocketPerSecond and BytesPerSocketPerSecond refill each
	// socket's token buckets; a frame past either is refused with
	// rate_limited. Each bucket holds two seconds' worth (the byte bucket at
	// least one max_frame_bytes frame).
	MessagesPerSocketPerSecond int `yaml:"messages_per_socket_per_second"`
	BytesPerSocketPerSecond    int `yaml:"bytes_per_socket_per_second"`
	// MaxMessagesPerConversation caps the messages and files of one
	// conversation (the gateway's own events do not count against it).
	MaxMessagesPerConversation int `yaml:"max_messages_per_conversation"`
	// MaxSocketsPerConversation caps a conversation's customer sockets,
	// MaxSocketsPerIP the sockets from one client address (an IPv6 /64)
	// other than agents' consoles, and MaxSocketsPerAgent one agent's
	// console sockets.
	MaxSocketsPerConversation int `yaml:"max_sockets_per_conversation"`
	MaxSocketsPerIP           int `yaml:"max_sockets_per_ip"`
	MaxSocketsPerAgent        int `yaml:"max_sockets_per_agent"`
	// HistoryPageMessages is how many messages of a transcript a welcome,
	// an accept or a history request sends at most: the latest ones, older
	// pages on request.
	HistoryPageMessages int `yaml:"history_page_messages"`
	// TokenRetention is how long a customer's token still opens a
	// conversation after it ended (the transcript, and routing back to the
	// same agent); later the widget starts afresh. Default 168h (7 days).
	TokenRetention time.Duration `yaml:"token_retention"`
	// MaxSchedulerLag refuses new calls while the gateway's goroutines
	// wake this much later than asked, on a moving average of the last
	// ~400 ms (the process has more work than CPU); calls in progress go
	// on. Default 20ms, one audio frame; 0s turns the check off.
	MaxSchedulerLag *time.Duration `yaml:"max_scheduler_lag"`
	// MaxCPUPercent refuses new calls while the process used more than
	// this share of the cores it may use (GOMAXPROCS) over the last
	// second; 0 (the default) turns the check off.
	MaxCPUPercent int `yaml:"max_cpu_percent"`
	// MaxMediaLatePercent refuses new calls while more than this share
	// of the media clock's 20 ms frame times over the last 2 s were
	// served more than a frame late or skipped: the calls' audio falls
	// behind, because the process gets less CPU than it needs (its own
	// calls, or other work on its core); calls in progress go on.
	// Default 10; 0 turns the check off.
	MaxMediaLatePercent *int `yaml:"max_media_late_percent"`
}

// defaultMaxMediaLatePercent is limits.max_media_late_percent when unset:
// one frame time in ten served late is an overload no jitter buffer hides
// for long, while a garbage collection or a single slow tick stays under
// it.
const defaultMaxMediaLatePercent = 10

// maxMediaLatePercent is limits.max_media_late_percent, its default when
// unset.
func (l LimitsConfig) maxMediaLatePercent() int {
	if l.MaxMediaLatePercent == nil {
		return defaultMaxMediaLatePercent
	}
	return *l.MaxMediaLatePercent
}

// defaultMaxSchedulerLag is limits.max_scheduler_lag when unset: one
// 20 ms audio frame late on average means every call is already late.
const defaultMaxSchedulerLag = 20 * time.Millisecond

// maxSchedulerLag is limits.max_scheduler_lag, its default when unset.
func (l LimitsConfig) maxSchedulerLag() time.Duration {
	if l.MaxSchedulerLag == nil {
		return defaultMaxSchedulerLag
	}
	return *l.MaxSchedulerLag
}

// Defaults of the call-start limits and of the token retention.
const (
	defaultCallsPerIPPerHour           = 20
	defaultCallsPerConversationPerHour = 6
	defaultTokenRetention              = 7 * 24 * time.Hour
)

// callsPerIP is limits.calls_per_ip_per_hour, its default when unset.
func (l LimitsConfig) callsPerIP() int {
	return valueOr(l.CallsPerIPPerHour, defaultCallsPerIPPerHour)
}

// callsPerConversation is limits.calls_per_conversation_per_hour, its
// default when unset.
func (l LimitsConfig) callsPerConversation() int {
	return valueOr(l.CallsPerConversationPerHour, defaultCallsPerConversationPerHour)
}

func valueOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// IdentityConfig is the "identity" section: the secret that signs customer
// identity tokens made by the website's backend.
type IdentityConfig struct {
	Secret string `yaml:"secret"`
}

// LogConfig is the "log" section.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// ApplyDefaults fills every unset field with its default. It has no side
// effects beyond c.
func (c *Config) ApplyDefaults() {
	c.HTTP.applyDefaults()
	c.Store.ApplyDefaults()
	c.WebRTC.ApplyDefaults()
	c.SIP.ApplyDefaults()
	for i := range c.Trunks {
		c.Trunks[i].ApplyDefaults()
	}
	for i := range c.Queues {
		if c.Queues[i].OfferTimeout == 0 {
			c.Queues[i].OfferTimeout = 30
		}
		if c.Queues[i].Voice == "" {
			c.Queues[i].Voice = VoiceAlways
		}
		if c.Queues[i].MaxWaiting == 0 {
			c.Queues[i].MaxWaiting = defaultMaxWaiting
		}
		if c.Queues[i].Video == "" {
			c.Queues[i].Video = VideoAlways
		}
		if c.Queues[i].Recording == "" {
			c.Queues[i].Recording = RecordingOff
		}
		if c.Queues[i].RecordingAnnouncement == "" {
			c.Queues[i].RecordingAnnouncement = AnnouncementOff
		}
	}
	l := &c.Limits
	if l.MaxCalls == 0 {
		l.MaxCalls = 200
	}
	if l.NewChatsPerIPPerMinute == 0 {
		l.NewChatsPerIPPerMinute = 10
	}
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = 4096
	}
	if l.MaxFrameBytes == 0 {
		l.MaxFrameBytes = 65536
	}
	if l.MaxUploadsPerConversation == 0 {
		l.MaxUploadsPerConversation = 50
	}
	if l.MaxChatsPerAgent == 0 {
		l.MaxChatsPerAgent = 4
	}
	if l.MaxConversations == 0 {
		l.MaxConversations = 10000
	}
	if l.MaxVideoSessions == 0 {
		l.MaxVideoSessions = 50
	}
	if l.MaxPeersPerIP == 0 {
		l.MaxPeersPerIP = 4
	}
	if l.PeerStartsPerIPPerMinute == 0 {
		l.PeerStartsPerIPPerMinute = 30
	}
	// 0 means unlimited for the call-start limits, so only an absent key
	// takes the default.
	if l.CallsPerIPPerHour == nil {
		n := defaultCallsPerIPPerHour
		l.CallsPerIPPerHour = &n
	}
	if l.CallsPerConversationPerHour == nil {
		n := defaultCallsPerConversationPerHour
		l.CallsPerConversationPerHour = &n
	}
	l.applyFlowDefaults()
	if l.TokenRetention == 0 {
		l.TokenRetention = defaultTokenRetention
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.DemoPhone.ApplyDefaults()
	c.Integrations.applyDefaults()
	c.Recording.applyDefaults()
}

// MaxChats is the number of conversations agent a may hold at once.
func (c *Config) MaxChats(a AgentConfig) int {
	if a.MaxChats > 0 {
		return a.MaxChats
	}
	return c.Limits.MaxChatsPerAgent
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Validate checks the whole configuration and reports every problem at
// once, each naming its YAML path.
func (c *Config) Validate() error {
	var errs []error
	add := func(prefix string, err error) { errs = append(errs, prefixErrors(prefix, err)...) }
	addf := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	add("http.", c.HTTP.validate())
	add("store.", c.Store.Validate())
	add("webrtc.", c.WebRTC.Validate())
	add("sip.", c.SIP.Validate())

	trunks := map[string]bool{}
	for i := range c.Trunks {
		t := &c.Trunks[i]
		add(fmt.Sprintf("trunks[%d].", i), t.Validate())
		if t.Name != "" && trunks[t.Name] {
			addf("trunks[%d].name: duplicate trunk %q", i, t.Name)
		}
		trunks[t.Name] = true
	}
	add("", sip.CheckTrunkTLS(c.Trunks))
	queues := map[string]bool{}
	if len(c.Queues) == 0 {
		addf("queues: at least one queue is required")
	}
	for i, q := range c.Queues {
		p := fmt.Sprintf("queues[%d]", i)
		switch {
		case q.Name == "":
			addf("%s.name: required", p)
		case !idRe.MatchString(q.Name):
			addf("%s.name: %q may hold only letters, digits, '_', '.', '-'", p, q.Name)
		case queues[q.Name]:
			addf("%s.name: duplicate queue %q", p, q.Name)
		}
		queues[q.Name] = true
		if q.Trunk != "" && !trunks[q.Trunk] {
			addf("%s.trunk: unknown trunk %q", p, q.Trunk)
		}
		if q.Dial != "" {
			if err := sip.ValidateURI(q.Dial); err != nil {
				addf("%s.dial: %v", p, err)
			}
			if q.Trunk == "" && len(c.Trunks) != 1 {
				addf("%s.trunk: required when dial is set and there is not exactly one trunk", p)
			}
		}
		if q.OfferTimeout < 0 {
			addf("%s.offer_timeout: must not be negative", p)
		}
		switch q.Voice {
		case "", VoiceAlways, VoiceAfterAccept, VoiceOff:
		default:
			addf("%s.voice: %q is not one of always, after_accept, off", p, q.Voice)
		}
		if q.MaxWaiting < 1 {
			addf("%s.max_waiting: must be positive", p)
		}
		switch q.Video {
		case "", VideoAlways, VideoAfterAccept, VideoOff:
		default:
			addf("%s.video: %q is not one of always, after_accept, off", p, q.Video)
		}
		if q.Hours != nil {
			_, err := q.Hours.compile()
			add(p+".hours.", err)
		}
		errs = append(errs, validateRecordingQueue(p, q)...)
		errs = append(errs, validateDeskQueue(p, q)...)
	}
	if c.Clock.Now != "" {
		if _, err := time.Parse(time.RFC3339, c.Clock.Now); err != nil {
			addf("clock.now: %q is not an RFC 3339 time such as 2026-01-05T19:30:00Z", c.Clock.Now)
		}
	}
	agents := map[string]bool{}
	for i, a := range c.Agents {
		p := fmt.Sprintf("agents[%d]", i)
		switch {
		case a.ID == "":
			addf("%s.id: required", p)
		case !idRe.MatchString(a.ID):
			addf("%s.id: %q may hold only letters, digits, '_', '.', '-'", p, a.ID)
		case agents[a.ID]:
			addf("%s.id: duplicate agent %q", p, a.ID)
		}
		agents[a.ID] = true
		if a.PasswordHash == "" {
			addf("%s.password_hash: required (make one with `segue agent passwd`)", p)
		} else if _, err := bcrypt.Cost([]byte(a.PasswordHash)); err != nil {
			addf("%s.password_hash: not a bcrypt hash (make one with `segue agent passwd`)", p)
		}
		if a.Phone != "" {
			if err := sip.ValidateURI(a.Phone); err != nil {
				addf("%s.phone: %v", p, err)
			}
		}
		if len(a.Queues) == 0 {
			addf("%s.queues: at least one queue is required", p)
		}
		for j, q := range a.Queues {
			if !queues[q] {
				addf("%s.queues[%d]: unknown queue %q", p, j, q)
			}
		}
		if a.MaxChats < 0 {
			addf("%s.max_chats: must not be negative", p)
		}
		switch a.Role {
		case "", RoleAgent, RoleSupervisor:
		default:
			addf("%s.role: %q is not one of agent, supervisor", p, a.Role)
		}
	}
	l := c.Limits
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"max_calls", int64(l.MaxCalls)},
		{"new_chats_per_ip_per_minute", int64(l.NewChatsPerIPPerMinute)},
		{"max_message_bytes", int64(l.MaxMessageBytes)},
		{"max_frame_bytes", l.MaxFrameBytes},
		{"max_uploads_per_conversation", int64(l.MaxUploadsPerConversation)},
		{"max_chats_per_agent", int64(l.MaxChatsPerAgent)},
		{"max_conversations", int64(l.MaxConversations)},
		{"max_video_sessions", int64(l.MaxVideoSessions)},
		{"max_peers_per_ip", int64(l.MaxPeersPerIP)},
		{"peer_starts_per_ip_per_minute", int64(l.PeerStartsPerIPPerMinute)},
	} {
		if f.v < 1 {
			addf("limits.%s: must be positive", f.key)
		}
	}
	if l.callsPerIP() < 0 {
		addf("limits.calls_per_ip_per_hour: must not be negative (0 is unlimited)")
	}
	if l.callsPerConversation() < 0 {
		addf("limits.calls_per_conversation_per_hour: must not be negative (0 is unlimited)")
	}
	if l.MaxSchedulerLag != nil && *l.MaxSchedulerLag < 0 {
		addf("limits.max_scheduler_lag: %v is negative; write a duration such as 20ms (0s turns the check off)", *l.MaxSchedulerLag)
	}
	if l.MaxCPUPercent < 0 || l.MaxCPUPercent > 100 {
		addf("limits.max_cpu_percent: %d is not between 0 (off) and 100", l.MaxCPUPercent)
	}
	if p := l.MaxMediaLatePercent; p != nil && (*p < 0 || *p > 100) {
		addf("limits.max_media_late_percent: %d is not between 0 (off) and 100", *p)
	}
	if l.TokenRetention < 0 {
		addf("limits.token_retention: %v is negative; write a duration such as 168h", l.TokenRetention)
	}
	if l.MaxFrameBytes > 0 && int64(l.MaxMessageBytes)+1024 > l.MaxFrameBytes {
		addf("limits.max_frame_bytes: must exceed max_message_bytes by at least 1024")
	}
	errs = append(errs, l.validateFlow()...)
	if c.Identity.Secret != "" && len(c.Identity.Secret) < 16 {
		addf("identity.secret: too short (at least 16 characters)")
	}
	errs = append(errs, c.checkExposure()...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		addf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		addf("log.format: %q is not one of text, json", c.Log.Format)
	}
	errs = append(errs, c.validateDemoPhone()...)
	add("integrations.", c.Integrations.validate())
	errs = append(errs, c.Recording.validate()...)
	add("cluster.", c.Cluster.validate(c.Store.Driver))
	return errors.Join(errs...)
}

// prefixErrors flattens a joined error and puts prefix before each part.
func prefixErrors(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	} else {
		parts = []error{err}
	}
	out := make([]error, 0, len(parts))
	for _, e := range parts {
		out = append(out, fmt.Errorf("%s%w", prefix, e))
	}
	return out
}

// LoadConfig reads, decodes, expands, defaults and validates the file at
// path. The error lists every problem found.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(data, os.LookupEnv)
}

// ParseConfig decodes data strictly (unknown keys are errors), expands
// braced ${NAME} references in secret fields with lookup, applies defaults
// and validates.
func ParseConfig(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg := &Config{}
	var errs []error
	lines := map[int]string{}
	if len(root.Content) > 0 {
		errs = append(errs, checkKeys(root.Content[0], reflect.TypeOf(*cfg), "", lines)...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				if strings.Contains(m, "not found in type") {
					continue // already reported with its path by checkKeys
				}
				errs = append(errs, errors.New(withPath(m, lines)))
			}
		} else {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	errs = append(errs, cfg.expandSecrets(lookup)...)
	cfg.ApplyDefaults()
	errs = append(errs, prefixErrors("", cfg.Validate())...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

var lineRe = regexp.MustCompile(`^line (\d+): (.*)$`)

// withPath turns yaml's "line 7: cannot unmarshal ..." into
// "limits.max_calls: cannot unmarshal ..." when the line is known.
func withPath(msg string, lines map[int]string) string {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	n, _ := strconv.Atoi(m[1])
	if p, ok := lines[n]; ok {
		return fmt.Sprintf("%s: %s (line %d)", p, m[2], n)
	}
	return msg
}

// checkKeys walks a YAML node against the Go type it decodes into and
// reports keys that have no field, with their full path. It records the
// path of every value's line in lines.
func checkKeys(n *yaml.Node, t reflect.Type, path string, lines map[int]string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		if _, seen := lines[n.Line]; !seen {
			lines[n.Line] = path
		}
	}
	var errs []error
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key", p))
				continue
			}
			lines[k.Line] = p
			errs = append(errs, checkKeys(v, ft, p, lines)...)
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, item := range n.Content {
			errs = append(errs, checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines)...)
		}
	}
	return errs
}

var braced = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandSecrets replaces ${NAME} in secret fields only. Anything else,
// bcrypt hashes included, is left exactly as written.
func (c *Config) expandSecrets(lookup func(string) (string, bool)) []error {
	var errs []error
	expand := func(path string, s *string) {
		*s = braced.ReplaceAllStringFunc(*s, func(ref string) string {
			name := ref[2 : len(ref)-1]
			v, ok := lookup(name)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: environment variable %s is not set", path, name))
			}
			return v
		})
	}
	for i := range c.Trunks {
		expand(fmt.Sprintf("trunks[%d].password", i), &c.Trunks[i].Password)
		expand(fmt.Sprintf("trunks[%d].inbound_password", i), &c.Trunks[i].InboundPassword)
	}
	for i := range c.WebRTC.ICEServers {
		expand(fmt.Sprintf("webrtc.ice_servers[%d].credential", i), &c.WebRTC.ICEServers[i].Credential)
		expand(fmt.Sprintf("webrtc.ice_servers[%d].secret", i), &c.WebRTC.ICEServers[i].Secret)
	}
	expand("identity.secret", &c.Identity.Secret)
	for i := range c.Integrations.Webhooks {
		expand(fmt.Sprintf("integrations.webhooks[%d].secret", i), &c.Integrations.Webhooks[i].Secret)
	}
	expand("store.dsn", &c.Store.DSN)
	expand("cluster.nats_token", &c.Cluster.NATSToken)
	return errs
}
