package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// recordConn is a net.Conn that records each Write call.
type recordConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
	closed bool
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recordConn) Close() error                     { r.closed = true; return nil }
func (r *recordConn) SetWriteDeadline(time.Time) error { return nil }

func TestBatchConnHoldsWhileMoreFollow(t *testing.T) {
	rc := &recordConn{}
	b := &batchConn{Conn: rc}

	// Holding off: each write goes out at once.
	b.Write([]byte("a"))
	b.Write([]byte("b"))
	if len(rc.writes) != 2 {
		t.Fatalf("without holding: %d writes, want 2", len(rc.writes))
	}

	// Holding on: nothing goes out until a write with holding off, which
	// takes everything, in order, in one write.
	rc.writes = nil
	b.setHold(true)
	b.Write([]byte("1"))
	b.Write([]byte("2"))
	if len(rc.writes) != 0 {
		t.Fatalf("held writes reached the network: %q", rc.writes)
	}
	b.setHold(false)
	b.Write([]byte("3"))
	if len(rc.writes) != 1 || rc.writes[0] != "123" {
		t.Fatalf("writes %q, want one \"123\"", rc.writes)
	}

	// flush writes what is held and turns holding off.
	rc.writes = nil
	b.setHold(true)
	b.Write([]byte("x"))
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("y"))
	if strings.Join(rc.writes, "|") != "x|y" {
		t.Fatalf("after flush: writes %q, want x then y", rc.writes)
	}

	// A batch never grows past maxBatchBytes: the write that would pass
	// it takes the batch out.
	rc.writes = nil
	b.setHold(true)
	chunk := bytes.Repeat([]byte("z"), maxBatchBytes/2)
	b.Write(chunk)
	b.Write(chunk)
	if len(rc.writes) != 0 {
		t.Fatalf("%d writes for a full batch, want 0", len(rc.writes))
	}
	b.Write([]byte("!"))
	if len(rc.writes) != 1 || len(rc.writes[0]) != maxBatchBytes+1 {
		t.Fatalf("past the bound: %d writes, want one of %d bytes", len(rc.writes), maxBatchBytes+1)
	}

	// Close writes what is still held.
	rc.writes = nil
	b.Write([]byte("last"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(rc.writes, "") != "last" || !rc.closed {
		t.Fatalf("close: writes %q closed %v", rc.writes, rc.closed)
	}
}

// A socket's writer sends every queued frame, in order, whether it
// batches them or not, and a frame queued after a burst is not held back.
func TestSocketWriterBatchesBursts(t *testing.T) {
	clients := make(chan *client, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := &batchWriter{ResponseWriter: w}
		conn, err := websocket.Accept(bw, r, nil)
		if err != nil {
			return
		}
		cl := newClient(conn, discardLog(), newMetrics())
		cl.out = bw.conn
		if cl.out == nil {
			t.Error("no batchConn under the socket")
		}
		clients <- cl
		cl.writeLoop(r.Context())
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	cl := <-clients
	defer cl.closeWith(websocket.StatusNormalClosure, "")

	const burst = 300
	for i := range burst {
		cl.enqueue(outFrame{data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	for i := range burst {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(b) != want {
			t.Fatalf("frame %d is %s, want %s", i, b, want)
		}
	}
	// One frame alone arrives without another to push it out.
	cl.enqueue(outFrame{data: []byte(`{"n":"alone"}`)})
	if _, b, err := c.Read(ctx); err != nil || string(b) != `{"n":"alone"}` {
		t.Fatalf("lone frame: %s %v", b, err)
	}
}
