package gateway

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the flow-control limits (docs/api.md, "Limits").
const (
	defaultMaxWaiting                 = 200
	defaultAbandonedAfter             = 10 * time.Minute
	defaultMessagesPerSocketPerSecond = 20
	defaultBytesPerSocketPerSecond    = 65536
	defaultMaxMessagesPerConversation = 5000
	defaultMaxSocketsPerConversation  = 8
	defaultMaxSocketsPerIP            = 64
	defaultMaxSocketsPerAgent         = 16
	defaultHistoryPageMessages        = 50

	// bucketSeconds is how many seconds of its rate a socket's token
	// bucket holds: the burst a client may send at once.
	bucketSeconds = 2
	// queuePageSize is how many waiting conversations a console gets at
	// once: in its welcome, then per queue.page request.
	queuePageSize = 50
)

// applyFlowDefaults fills the unset flow-control limits.
func (l *LimitsConfig) applyFlowDefaults() {
	set := func(p *int, def int) {
		if *p == 0 {
			*p = def
		}
	}
	if l.AbandonedAfter == 0 {
		l.AbandonedAfter = defaultAbandonedAfter
	}
	set(&l.MessagesPerSocketPerSecond, defaultMessagesPerSocketPerSecond)
	set(&l.BytesPerSocketPerSecond, defaultBytesPerSocketPerSecond)
	set(&l.MaxMessagesPerConversation, defaultMaxMessagesPerConversation)
	set(&l.MaxSocketsPerConversation, defaultMaxSocketsPerConversation)
	set(&l.MaxSocketsPerIP, defaultMaxSocketsPerIP)
	set(&l.MaxSocketsPerAgent, defaultMaxSocketsPerAgent)
	set(&l.HistoryPageMessages, defaultHistoryPageMessages)
}

// validateFlow checks the flow-control limits, each error naming its key.
func (l *LimitsConfig) validateFlow() []error {
	var errs []error
	if l.AbandonedAfter < time.Second {
		errs = append(errs, fmt.Errorf("limits.abandoned_after: %v is too short; write a duration of at least 1s, such as 10m", l.AbandonedAfter))
	}
	for _, f := range []struct {
		key string
		v   int
	}{
		{"messages_per_socket_per_second", l.MessagesPerSocketPerSecond},
		{"bytes_per_socket_per_second", l.BytesPerSocketPerSecond},
		{"max_messages_per_conversation", l.MaxMessagesPerConversation},
		{"max_sockets_per_conversation", l.MaxSocketsPerConversation},
		{"max_sockets_per_ip", l.MaxSocketsPerIP},
		{"max_sockets_per_agent", l.MaxSocketsPerAgent},
		{"history_page_messages", l.HistoryPageMessages},
	} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("limits.%s: must be positive", f.key))
		}
	}
	if l.HistoryPageMessages > 1000 {
		errs = append(errs, fmt.Errorf("limits.history_page_messages: at most 1000 (each page is one frame)"))
	}
	return errs
}

// tokenBucket allows rate units per second on average and burst at once.
// It is used by one goroutine (a socket's read loop) and needs no lock.
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(rate, burst float64) tokenBucket {
	return tokenBucket{rate: rate, burst: burst, tokens: burst}
}

// refill adds what the time since the last call earned, up to burst.
func (b *tokenBucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// wait is how long until n units are available (0 if they are now).
func (b *tokenBucket) wait(n float64) time.Duration {
	if b.tokens >= n {
		return 0
	}
	return time.Duration((n - b.tokens) / b.rate * float64(time.Second))
}

// socketLimiter is a socket's pair of token buckets: frames and bytes.
type socketLimiter struct {
	frames, bytes tokenBucket
	// refused counts frames refused in a row; a client that goes on
	// sending regardless is disconnected.
	refused int
}

func newSocketLimiter(l LimitsConfig) *socketLimiter {
	fr := float64(l.MessagesPerSocketPerSecond)
	br := float64(l.BytesPerSocketPerSecond)
	return &socketLimiter{
		frames: newTokenBucket(fr, fr*bucketSeconds),
		bytes:  newTokenBucket(br, max(br*bucketSeconds, float64(l.MaxFrameBytes))),
	}
}

// allow takes one frame of size bytes at now. When either bucket is short,
// it takes nothing and says how long to wait.
func (s *socketLimiter) allow(size int, now time.Time) (bool, time.Duration) {
	s.frames.refill(now)
	s.bytes.refill(now)
	w := max(s.frames.wait(1), s.bytes.wait(float64(size)))
	if w > 0 {
		s.refused++
		return false, w
	}
	s.frames.tokens--
	s.bytes.tokens -= float64(size)
	s.refused = 0
	return true, 0
}

// floods reports whether the client has ignored rate_limited for so long
// (four bursts' worth of refused frames in a row) that it is closed.
func (s *socketLimiter) floods() bool {
	return float64(s.refused) > 4*s.frames.burst
}

// retrySeconds rounds a wait up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// socketSlots counts open sockets per key ("ip:<addrKey>",
// "agent:<id>") against a cap.
type socketSlots struct {
	mu sync.Mutex
	n  map[string]int
}

func newSocketSlots() *socketSlots { return &socketSlots{n: map[string]int{}} }

// acquire takes a slot for key unless limit are taken.
func (s *socketSlots) acquire(key string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] >= limit {
		return false
	}
	s.n[key]++
	return true
}

// release gives back a slot of key.
func (s *socketSlots) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] <= 1 {
		delete(s.n, key)
		return
	}
	s.n[key]--
}

// count is how many slots key holds.
func (s *socketSlots) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[key]
}

// flowMetrics count what flow control refused or dropped.
type flowMetrics struct {
	// dropped: frames not delivered to a socket, by reason (typing: an
	// indicator dropped for a backlog; slow: the socket was closed for one).
	dropped *prometheus.CounterVec
	// refusedSockets: sockets refused by a cap (ip, conversation, agent).
	refusedSockets *prometheus.CounterVec
	// rateLimited: frames refused by a socket's token buckets.
	rateLimited prometheus.Counter
	// abandoned: waiting conversations that ended by themselves.
	abandoned prometheus.Counter
	// queueFull: new chats refused by queues[].max_waiting.
	queueFull prometheus.Counter
}

func newFlowMetrics(reg *prometheus.Registry) flowMetrics {
	m := flowMetrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_websocket_frames_dropped_total", Help: "Frames not delivered: typing indicators dropped for a backlog (typing), frames lost when a too slow socket was closed (slow).",
		}, []string{"reason"}),
		refusedSockets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_websocket_refused_total", Help: "WebSocket connections closed by a socket cap, by cap (ip, conversation, agent).",
		}, []string{"cap"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_websocket_rate_limited_total", Help: "Frames refused by a socket's token buckets (limits.*_per_socket_per_second).",
		}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_conversations_abandoned_total", Help: "Waiting conversations ended by limits.abandoned_after.",
		}),
		queueFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_queue_full_total", Help: "New conversations refused by queues[].max_waiting.",
		}),
	}
	reg.MustRegister(m.dropped, m.refusedSockets, m.rateLimited, m.abandoned, m.queueFull)
	return m
}
