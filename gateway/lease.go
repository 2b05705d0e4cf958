package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaseTTL is how long a node counts as alive after its last heartbeat
// in the lease store: a node killed without a word loses what it holds
// after at most leaseTTL.
const leaseTTL = 5 * time.Second

// leases is where the nodes of a cluster agree on who holds what: a
// conversation (key "conv.<id>") or a trunk's registration ("trunk.<hex
// name>"). A key names the holder's incarnation, "<node>.<random>", one
// per start of a node. An incarnation is alive while its heartbeat is
// younger than leaseTTL; a key whose holder is not alive is free to take.
//
// Every change is a compare-and-set on the key's revision, so of two
// nodes claiming one key at once exactly one succeeds (errLeaseTaken for
// the other): no conversation or trunk ever has two holders.
type leases interface {
	// Heartbeat keeps incarnation inc alive for leaseTTL from now.
	Heartbeat(ctx context.Context, inc string) error
	// Alive returns the incarnations alive now.
	Alive(ctx context.Context) (map[string]bool, error)
	// Holder returns key's holder and revision, or "" and 0 when no one
	// holds it.
	Holder(ctx context.Context, key string) (holder string, rev uint64, err error)
	// Claim makes inc the holder of key if key is still at revision rev
	// (0: held by no one), and returns the new revision; errLeaseTaken
	// if the key changed meanwhile.
	Claim(ctx context.Context, key, inc string, rev uint64) (uint64, error)
	// Free gives key up if it is still at revision rev.
	Free(ctx context.Context, key string, rev uint64) error
	// List returns every held key starting with prefix.
	List(ctx context.Context, prefix string) ([]leaseEntry, error)
}

// leaseEntry is one held key.
type leaseEntry struct {
	Key    string
	Holder string
	Rev    uint64
}

// memLeases is the lease store of one process (tests): several hubs
// share one. Kill makes an incarnation dead at once.
type memLeases struct {
	mu    sync.Mutex
	rev   uint64
	keys  map[string]leaseEntry
	alive map[string]time.Time
}

func newMemLeases() *memLeases {
	return &memLeases{keys: map[string]leaseEntry{}, alive: map[string]time.Time{}}
}

// Heartbeat implements leases.
func (m *memLeases) Heartbeat(_ context.Context, inc string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alive[inc] = time.Now().Add(leaseTTL)
	return nil
}

// Alive implements leases.
func (m *memLeases) Alive(context.Context) (map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now, out := time.Now(), map[string]bool{}
	for inc, until := range m.alive {
		if now.Before(until) {
			out[inc] = true
		}
	}
	return out, nil
}

// kill ends incarnation inc's life, as a kill -9 does once leaseTTL has
// passed.
func (m *memLeases) kill(inc string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.alive, inc)
}

// Holder implements leases.
func (m *memLeases) Holder(_ context.Context, key string) (string, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.keys[key]
	return e.Holder, e.Rev, nil
}

// Claim implements leases.
func (m *memLeases) Claim(_ context.Context, key, inc string, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[key].Rev != rev {
		return 0, errLeaseTaken
	}
	m.rev++
	m.keys[key] = leaseEntry{Key: key, Holder: inc, Rev: m.rev}
	return m.rev, nil
}

// Free implements leases.
func (m *memLeases) Free(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[key].Rev != rev {
		return errLeaseTaken
	}
	delete(m.keys, key)
	return nil
}

// List implements leases.
func (m *memLeases) List(_ context.Context, prefix string) ([]leaseEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []leaseEntry
	for k, e := range m.keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Lease buckets in NATS JetStream's key-value store.
const (
	// bucketNodes holds one key per live incarnation; the bucket's TTL
	// (max age) removes a key leaseTTL after its last heartbeat.
	bucketNodes = "segue_nodes"
	// bucketLeases holds the conversation and trunk keys, which never
	// expire: their holder's death frees them.
	bucketLeases = "segue_leases"
)

// natsLeases keeps the leases in two JetStream key-value buckets, whose
// revisions give the compare-and-set (docs/scaling.md says why NATS and
// not PostgreSQL). Both are file-backed, so a restart of nats-server
// forgets no holder.
type natsLeases struct {
	nodes, keys jetstream.KeyValue
}

// openNATSLeases creates or opens the lease buckets on nc's JetStream.
func openNATSLeases(ctx context.Context, nc *nats.Conn) (*natsLeases, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	nodes, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketNodes, TTL: leaseTTL,
		History: 1, Storage: jetstream.FileStorage, Description: "segue: live gateway incarnations"})
	if err != nil {
		return nil, fmt.Errorf("bucket %s (is JetStream on?): %w", bucketNodes, err)
	}
	keys, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketLeases,
		History: 1, Storage: jetstream.FileStorage, Description: "segue: conversation and trunk holders"})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucketLeases, err)
	}
	return &natsLeases{nodes: nodes, keys: keys}, nil
}

// Heartbeat implements leases.
func (l *natsLeases) Heartbeat(ctx context.Context, inc string) error {
	_, err := l.nodes.Put(ctx, inc, []byte("alive"))
	return err
}

// Alive implements leases.
func (l *natsLeases) Alive(ctx context.Context) (map[string]bool, error) {
	ls, err := l.nodes.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer ls.Stop()
	out := map[string]bool{}
	for k := range ls.Keys() {
		out[k] = true
	}
	return out, nil
}

// Holder implements leases.
func (l *natsLeases) Holder(ctx context.Context, key string) (string, uint64, error) {
	e, err := l.keys.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	return string(e.Value()), e.Revision(), nil
}

// Claim implements leases. Revision 0 is a create, which JetStream
// refuses when the key is held; a key given up (a delete marker) may be
// created again.
func (l *natsLeases) Claim(ctx context.Context, key, inc string, rev uint64) (uint64, error) {
	var (
		n   uint64
		err error
	)
	if rev == 0 {
		n, err = l.keys.Create(ctx, key, []byte(inc))
	} else {
		n, err = l.keys.Update(ctx, key, []byte(inc), rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || wrongRevision(err) {
		return 0, errLeaseTaken
	}
	return n, err
}

// Free implements leases.
func (l *natsLeases) Free(ctx context.Context, key string, rev uint64) error {
	err := l.keys.Delete(ctx, key, jetstream.LastRevision(rev))
	if wrongRevision(err) {
		return errLeaseTaken
	}
	return err
}

// wrongRevision reports whether err is JetStream refusing a write made
// against a revision that is no longer the key's last.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// List implements leases.
func (l *natsLeases) List(ctx context.Context, prefix string) ([]leaseEntry, error) {
	w, err := l.keys.Watch(ctx, prefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []leaseEntry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return out, nil // the initial values are all in
			}
			out = append(out, leaseEntry{Key: e.Key(), Holder: string(e.Value()), Rev: e.Revision()})
		}
	}
}
