// Package flood sends a bounded flood of SIP OPTIONS requests over UDP
// from a chosen source address, and counts what comes back. It is the
// engine of the sipflood command and of the flood end-to-end test; it
// only targets loopback addresses.
package flood

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Limits that keep the tool a test tool.
const (
	MaxRate     = 100_000
	MaxDuration = 5 * time.Minute
)

// Config says what to send.
type Config struct {
	// Target is the gateway's SIP address, ip:port, on loopback.
	Target string
	// From is the source IP to send from (e.g. 127.0.0.2); the port is
	// picked by the system.
	From string
	// Rate is requests per second, 1 to MaxRate.
	Rate int
	// Duration is how long to send, up to MaxDuration.
	Duration time.Duration
	// Method is the request method, OPTIONS when empty.
	Method string
}

// Result is what a run sent and received.
type Result struct {
	Sent, SendErrors int
	// Received counts datagrams that came back to the flood's socket,
	// until half a second after the last request.
	Received, ReceivedBytes int
	Elapsed                 time.Duration
}

func (r Result) String() string {
	rate := 0.0
	if r.Elapsed > 0 {
		rate = float64(r.Sent) / r.Elapsed.Seconds()
	}
	return fmt.Sprintf("sent %d requests in %v (%.0f/s, %d send errors); received %d datagrams (%d bytes)",
		r.Sent, r.Elapsed.Round(time.Millisecond), rate, r.SendErrors, r.Received, r.ReceivedBytes)
}

func (c Config) check() (netip.AddrPort, netip.Addr, error) {
	to, err := netip.ParseAddrPort(c.Target)
	if err != nil {
		return to, netip.Addr{}, fmt.Errorf("flood: target %q: want ip:port", c.Target)
	}
	from, err := netip.ParseAddr(c.From)
	if err != nil {
		return to, from, fmt.Errorf("flood: source %q: want an IP address", c.From)
	}
	switch {
	case !to.Addr().IsLoopback() || !from.IsLoopback():
		return to, from, errors.New("flood: target and source must be loopback addresses")
	case c.Rate < 1 || c.Rate > MaxRate:
		return to, from, fmt.Errorf("flood: rate %d outside 1-%d", c.Rate, MaxRate)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return to, from, fmt.Errorf("flood: duration %v outside (0, %v]", c.Duration, MaxDuration)
	}
	return to, from, nil
}

// Run floods until Duration has passed or ctx ends, then waits half a
// second for late answers and returns the counts.
func Run(ctx context.Context, c Config) (Result, error) {
	var res Result
	to, from, err := c.check()
	if err != nil {
		return res, err
	}
	method := c.Method
	if method == "" {
		method = "OPTIONS"
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
	if err != nil {
		return res, fmt.Errorf("flood: %w", err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()

	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			res.Received++
			res.ReceivedBytes += n
			mu.Unlock()
		}
	}()

	start := time.Now()
	end := start.Add(c.Duration)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 0, 512)
	sent, errs := 0, 0
loop:
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		due := int(now.Sub(start).Seconds() * float64(c.Rate))
		for ; sent < due; sent++ {
			buf = request(buf[:0], method, to.String(), local, sent)
			if _, err := conn.WriteToUDPAddrPort(buf, to); err != nil {
				errs++
			}
		}
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	elapsed := time.Since(start)
	select {
	case <-ctx.Done():
	case <-time.After(500 * time.Millisecond):
	}
	conn.Close()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	res.Sent, res.SendErrors, res.Elapsed = sent, errs, elapsed
	return res, nil
}

// request appends request number n, with its own branch and Call-ID.
func request(b []byte, method, target, local string, n int) []byte {
	id := strconv.Itoa(n)
	b = append(b, method+" sip:flood-"...)
	b = append(b, id...)
	b = append(b, "@"+target+" SIP/2.0\r\nVia: SIP/2.0/UDP "+local+";rport;branch=z9hG4bK-flood-"...)
	b = append(b, id...)
	b = append(b, "\r\nFrom: <sip:flood@"+local+">;tag=flood"...)
	b = append(b, id...)
	b = append(b, "\r\nTo: <sip:flood-"...)
	b = append(b, id...)
	b = append(b, "@"+target+">\r\nCall-ID: flood-"...)
	b = append(b, id...)
	b = append(b, "@"+local+"\r\nCSeq: 1 "+method+"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
	return b
}
