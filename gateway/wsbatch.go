package gateway

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// Write batching. The WebSocket library flushes every message to the
// socket on its own, one write system call each. A console receiving a
// busy center's messages gets them in bursts (a store commit delivers
// hundreds at once), and one system call per frame was a large share of
// the gateway's CPU. So the connection under a socket's WebSocket is a
// batchConn: while the socket's writer goroutine has more frames queued
// it holds what the library writes, and the frame it writes last, with
// nothing more queued, takes them all to the network in one write.
// Whenever the writer waits for more frames, nothing is held.

// maxBatchBytes bounds what a batchConn holds: past it, the frames held
// go out with the one being written.
const maxBatchBytes = 64 << 10

// batchConn is a hijacked connection that can hold writes (see above).
// It also bounds every write to the network by writeTimeout, with a write
// deadline moved on at most once a second, so that the socket's writer
// need not give the WebSocket library a context with a timer per frame.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	hold     bool
	buf      []byte
	deadline time.Time // the write deadline set last
}

// armLocked makes sure the write deadline is between writeTimeout-1s and
// writeTimeout away.
func (b *batchConn) armLocked() {
	now := time.Now()
	if b.deadline.Sub(now) >= writeTimeout-time.Second {
		return
	}
	b.deadline = now.Add(writeTimeout)
	_ = b.Conn.SetWriteDeadline(b.deadline)
}

// sendLocked writes p to the network.
func (b *batchConn) sendLocked(p []byte) error {
	b.armLocked()
	_, err := b.Conn.Write(p)
	return err
}

// setHold tells whether the next writes may be held (the writer has more
// frames to write after them) or must reach the network with all that is
// held (the writer is about to wait).
func (b *batchConn) setHold(hold bool) {
	b.mu.Lock()
	b.hold = hold
	b.mu.Unlock()
}

// Write holds p while holding is on and the batch has room; otherwise it
// writes what is held and p in one write.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hold && len(b.buf)+len(p) <= maxBatchBytes {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if len(b.buf) == 0 {
		if err := b.sendLocked(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	err := b.sendLocked(b.buf)
	b.release()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush turns holding off and writes what is held.
func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = false
	if len(b.buf) == 0 {
		return nil
	}
	err := b.sendLocked(b.buf)
	b.release()
	return err
}

// release drops the held bytes, and the buffer when a large burst grew it.
func (b *batchConn) release() {
	if cap(b.buf) > 2*maxBatchBytes {
		b.buf = nil
		return
	}
	b.buf = b.buf[:0]
}

// Close closes the connection. What is still held is written first when
// no write is under way (a close frame the library wrote while the
// writer held, say); Close never waits for a write, since the library
// closes the connection precisely to end one that hangs.
func (b *batchConn) Close() error {
	if b.mu.TryLock() {
		if len(b.buf) > 0 {
			b.deadline = time.Now().Add(flushTimeout)
			_ = b.Conn.SetWriteDeadline(b.deadline)
			_, _ = b.Conn.Write(b.buf)
			b.release()
		}
		b.hold = false
		b.mu.Unlock()
	}
	return b.Conn.Close()
}

// batchWriter is the http.ResponseWriter handed to the WebSocket upgrade:
// its Hijack puts a batchConn under the WebSocket.
type batchWriter struct {
	http.ResponseWriter
	conn *batchConn
}

// Unwrap lets http.ResponseController reach the writer beneath.
func (w *batchWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the connection over and wraps it in a batchConn. The
// buffered writer net/http hands over holds nothing (the upgrade's
// response has been flushed): it is pointed at the batchConn.
func (w *batchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &batchConn{Conn: c}
	brw.Writer.Reset(w.conn)
	return w.conn, brw, nil
}
