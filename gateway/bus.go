package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// bus carries events and commands between the gateways of a cluster
// (cluster section). Subjects are dot-separated tokens; a subscription may
// end in ">" (any tail) or use "*" (any one token), as NATS subjects do.
//
// Delivery is at most once and live only: what must survive a node's
// death is in the store first, and the bus tells the nodes that hold a
// socket about it (docs/scaling.md).
//
// Handlers run on the bus's own goroutines, one subscription's messages
// in order; they must not block for long, and Publish never waits for
// them, so a caller may publish while holding hub.mu.
type bus interface {
	// Publish sends data to every subscriber of subject.
	Publish(subject string, data []byte) error
	// Subscribe calls fn for each message published to a matching
	// subject until the returned function is called.
	Subscribe(subject string, fn func(subject string, data []byte)) (unsubscribe func(), err error)
	// Request sends data to one responder of subject and waits for its
	// answer until ctx ends. With no responder it fails with
	// errNoResponder at once.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
	// Respond answers requests to subject with fn's result until the
	// returned function is called.
	Respond(subject string, fn func(data []byte) []byte) (unsubscribe func(), err error)
	// Close ends every subscription.
	Close() error
}

// subjectMatch reports whether subject matches pattern ("*" one token,
// a final ">" one or more tokens).
func subjectMatch(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return i == len(p)-1 && len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// memBus is the bus of one process: several hubs of a test share one and
// behave as the nodes of a cluster. Each subscription has its own queue
// and goroutine, so handlers never run inside Publish.
type memBus struct {
	mu     sync.Mutex
	subs   map[*memSub]struct{}
	closed bool
}

type memSub struct {
	pattern string
	fn      func(subject string, data []byte)
	reply   func(data []byte) []byte // a responder, or nil

	mu    sync.Mutex
	queue []memMsg
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
}

type memMsg struct {
	subject string
	data    []byte
	answer  chan []byte
}

func newMemBus() *memBus { return &memBus{subs: map[*memSub]struct{}{}} }

func (b *memBus) add(s *memSub) (func(), error) {
	s.wake, s.quit, s.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errBusClosed
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go s.run()
	return func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		s.stop()
	}, nil
}

func (s *memSub) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

func (s *memSub) push(m memMsg) {
	s.mu.Lock()
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *memSub) run() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			m := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			if s.reply != nil {
				m.answer <- s.reply(m.data)
				continue
			}
			s.fn(m.subject, m.data)
		}
	}
}

// Subscribe implements bus.
func (b *memBus) Subscribe(subject string, fn func(string, []byte)) (func(), error) {
	return b.add(&memSub{pattern: subject, fn: fn})
}

// Respond implements bus.
func (b *memBus) Respond(subject string, fn func([]byte) []byte) (func(), error) {
	return b.add(&memSub{pattern: subject, reply: fn})
}

// Publish implements bus.
func (b *memBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errBusClosed
	}
	for s := range b.subs {
		if s.reply == nil && subjectMatch(s.pattern, subject) {
			s.push(memMsg{subject: subject, data: append([]byte(nil), data...)})
		}
	}
	return nil
}

// Request implements bus.
func (b *memBus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	b.mu.Lock()
	var to *memSub
	for s := range b.subs {
		if s.reply != nil && subjectMatch(s.pattern, subject) {
			to = s
			break
		}
	}
	b.mu.Unlock()
	if to == nil {
		return nil, errNoResponder
	}
	answer := make(chan []byte, 1)
	to.push(memMsg{subject: subject, data: append([]byte(nil), data...), answer: answer})
	select {
	case a := <-answer:
		return a, nil
	case <-to.done:
		// A responder that answered and then stopped (a node letting a
		// conversation go answers, then unsubscribes) still answered.
		select {
		case a := <-answer:
			return a, nil
		default:
		}
		return nil, errNoResponder
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close implements bus.
func (b *memBus) Close() error {
	b.mu.Lock()
	b.closed = true
	subs := b.subs
	b.subs = map[*memSub]struct{}{}
	b.mu.Unlock()
	for s := range subs {
		s.stop()
	}
	return nil
}

// natsBus is the bus of a cluster: core NATS subjects (docs/scaling.md
// says why no JetStream stream is needed for them).
type natsBus struct {
	nc *nats.Conn
}

// dialNATS connects to url as node name, with a token or a credentials
// file when the NATS server asks for one. The client reconnects forever
// (nats.go keeps what is published meanwhile in a buffer), so a NATS
// restart costs live events, never the gateway.
//
// Every node trusts what arrives on the bus as coming from another node
// of the cluster: NATS must be private to the cluster, on its own
// network and with authentication (docs/scaling.md).
func dialNATS(url, name, token, creds string) (*natsBus, error) {
	opts := []nats.Option{nats.Name("segue " + name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.Timeout(5 * time.Second)}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	return &natsBus{nc: nc}, nil
}

// Publish implements bus.
func (b *natsBus) Publish(subject string, data []byte) error { return b.nc.Publish(subject, data) }

// Subscribe implements bus.
func (b *natsBus) Subscribe(subject string, fn func(string, []byte)) (func(), error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Subject, m.Data) })
	if err != nil {
		return nil, err
	}
	// A fan-out subject of a busy cluster must not stall on the default
	// 64k-message pending limit; the store holds the truth anyway.
	_ = sub.SetPendingLimits(-1, 256<<20)
	return func() { _ = sub.Unsubscribe() }, nil
}

// Respond implements bus.
func (b *natsBus) Respond(subject string, fn func([]byte) []byte) (func(), error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(fn(m.Data)) })
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Request implements bus.
func (b *natsBus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	m, err := b.nc.RequestWithContext(ctx, subject, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, errNoResponder
	}
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// Close implements bus.
func (b *natsBus) Close() error {
	return b.nc.Drain()
}
