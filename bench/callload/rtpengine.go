package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"
)

// ngClient speaks rtpengine's ng control protocol: one UDP datagram per
// message, "<cookie> <bencoded dictionary>", the reply carrying the same
// cookie. Lost datagrams are sent again with the same cookie, which
// rtpengine recognises and answers from its cache.
type ngClient struct {
	conn   *net.UDPConn
	next   atomic.Uint64
	mu     sync.Mutex
	wait   map[string]chan map[string]any
	closed chan struct{}
}

func dialNG(addr string) (*ngClient, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp4", nil, ua)
	if err != nil {
		return nil, err
	}
	c := &ngClient{conn: conn, wait: map[string]chan map[string]any{}, closed: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *ngClient) read() {
	defer close(c.closed)
	buf := make([]byte, 65536)
	for {
		n, err := c.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// ICMP port unreachable while rtpengine starts: try again.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		cookie, body, ok := strings.Cut(string(buf[:n]), " ")
		if !ok {
			continue
		}
		v, err := bdecode([]byte(body))
		if err != nil {
			continue
		}
		d, ok := v.(map[string]any)
		if !ok {
			continue
		}
		c.mu.Lock()
		ch := c.wait[cookie]
		delete(c.wait, cookie)
		c.mu.Unlock()
		if ch != nil {
			ch <- d
		}
	}
}

// do sends msg and returns the reply; a reply whose result is not "ok"
// is an error carrying rtpengine's error-reason.
func (c *ngClient) do(ctx context.Context, msg map[string]any) (map[string]any, error) {
	body, err := bencode(msg)
	if err != nil {
		return nil, err
	}
	cookie := strconv.FormatUint(c.next.Add(1), 36) + "_callload"
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	c.wait[cookie] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.wait, cookie)
		c.mu.Unlock()
	}()
	pkt := append([]byte(cookie+" "), body...)
	for attempt := 0; ; attempt++ {
		if _, err := c.conn.Write(pkt); err != nil {
			return nil, err
		}
		select {
		case d := <-ch:
			if r, _ := d["result"].(string); r != "ok" && r != "pong" {
				reason, _ := d["error-reason"].(string)
				return nil, fmt.Errorf("rtpengine %s: %s %s", msg["command"], r, reason)
			}
			return d, nil
		case <-time.After(time.Duration(500*(attempt+1)) * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("rtpengine %s: %w", msg["command"], ctx.Err())
		case <-c.closed:
			return nil, errors.New("rtpengine: control socket closed")
		}
	}
}

func (c *ngClient) close() { _ = c.conn.Close() }

// rtpengineTarget has rtpengine do what the gateway's media path does:
// the customer's Opus over ICE and DTLS-SRTP on one side, PCMU over plain
// RTP toward the echo phone on the other, transcoded both ways.
type rtpengineTarget struct {
	ng        *ngClient
	echoPort  int
	sessionID atomic.Uint64
}

func (t *rtpengineTarget) prepare(ctx context.Context) error {
	_, err := t.ng.do(ctx, map[string]any{"command": "ping"})
	return err
}

type rtpengineLeg struct {
	t       *rtpengineTarget
	callID  string
	fromTag string
}

func (t *rtpengineTarget) setup(ctx context.Context, c *call) (leg, error) {
	sdp, err := c.offer()
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	l := &rtpengineLeg{t: t, callID: fmt.Sprintf("callload-%d-%d", time.Now().UnixNano(), c.idx), fromTag: fmt.Sprintf("cust%d", c.idx)}
	c.started = time.Now()
	// The offer goes to the phone: plain RTP, no ICE, the customer's Opus
	// masked and PCMU added by transcoding.
	off, err := t.ng.do(ctx, map[string]any{
		"command": "offer", "call-id": l.callID, "from-tag": l.fromTag, "sdp": sdp,
		"ICE": "remove", "DTLS": "off", "transport-protocol": "RTP/AVP",
		"codec": map[string]any{"mask": []string{"opus"}, "transcode": []string{"PCMU"}},
		"flags": []string{"trust-address"}, "replace": []string{"origin", "session-connection"},
	})
	if err != nil {
		return nil, err
	}
	// The phone must see PCMU only, or rtpengine would not be transcoding.
	if toPhone, _ := off["sdp"].(string); !strings.Contains(toPhone, "PCMU/8000") || strings.Contains(strings.ToLower(toPhone), "opus") {
		l.hangup(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("rtpengine offered the phone something else than PCMU alone (%q)", toPhone)
	}
	// The phone answers PCMU; rtpengine's answer to the customer keeps the
	// customer's Opus over ICE and DTLS-SRTP.
	id := t.sessionID.Add(1)
	phone := fmt.Sprintf("v=0\r\no=echo %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n", id, t.echoPort)
	ans, err := t.ng.do(ctx, map[string]any{
		"command": "answer", "call-id": l.callID, "from-tag": l.fromTag, "to-tag": fmt.Sprintf("echo%d", c.idx), "sdp": phone,
		"ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF",
		"flags": []string{"trust-address"},
	})
	if err != nil {
		l.hangup(context.WithoutCancel(ctx))
		return nil, err
	}
	answer, _ := ans["sdp"].(string)
	c.useAnswer(answer)
	if err := c.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		l.hangup(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("rtpengine's answer: %w", err)
	}
	for c.mediaUp.Load() == 0 {
		select {
		case <-ctx.Done():
			l.hangup(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("rtpengine: ICE/DTLS not connected in time (state %s)", c.pc.ConnectionState())
		case <-time.After(5 * time.Millisecond):
		}
	}
	c.connected = time.Now()
	return l, nil
}

func (l *rtpengineLeg) hangup(ctx context.Context) {
	_, _ = l.t.ng.do(ctx, map[string]any{"command": "delete", "call-id": l.callID, "from-tag": l.fromTag})
}

func (l *rtpengineLeg) record(context.Context) *callRecord { return nil }

// startRtpengine runs rtpengine in the foreground, userspace only (no
// kernel table), with one worker thread, pinned to cpu, media on
// 127.0.0.1, and waits for its ng port to answer.
func startRtpengine(ctx context.Context, dir string, cpu int) (*proc, *ngClient, error) {
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		return nil, nil, errors.New("rtpengine not found (Debian: apt-get install rtpengine-daemon)")
	}
	port, err := freePort(false)
	if err != nil {
		return nil, nil, err
	}
	lo := 30000 + 2000*(port%10)
	p, err := startProc(dir, "rtpengine", pinned(cpu, bin, "--foreground", "--log-stderr", "--log-level=4",
		"--table=-1", "--num-threads=1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:"+strconv.Itoa(port),
		"--port-min="+strconv.Itoa(lo), "--port-max="+strconv.Itoa(lo+1999))...)
	if err != nil {
		return nil, nil, err
	}
	ng, err := dialNG(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		p.stop()
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := ng.do(pctx, map[string]any{"command": "ping"}); err != nil {
		ng.close()
		p.stop()
		return nil, nil, fmt.Errorf("%w: %s", err, p.tail())
	}
	return p, ng, nil
}
