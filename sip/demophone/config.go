package demophone

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Config is the "demo_phone" section of the configuration.
type Config struct {
	// Enabled starts the demo phone with "segue serve".
	Enabled bool `yaml:"enabled"`
	// Listen is the UDP host:port the phone's SIP listens on; the host
	// must be a loopback address (default 127.0.0.1:5080).
	Listen string `yaml:"listen"`
	// RTPPortRange is the inclusive range of the phone's own RTP ports,
	// apart from the gateway's (default [21000, 21099]).
	RTPPortRange [2]int `yaml:"rtp_port_range"`
	// Greeting is what the phone plays before it echoes: "chime" (the
	// default: three tones), "none", or the path of a WAV file (16-bit
	// mono, any rate).
	Greeting string `yaml:"greeting"`
}

// Greeting values other than a file path.
const (
	GreetingChime = "chime"
	GreetingNone  = "none"
)

// ApplyDefaults fills unset fields with their defaults. It has no side
// effects beyond c.
func (c *Config) ApplyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:5080"
	}
	if c.RTPPortRange == [2]int{} {
		c.RTPPortRange = [2]int{21000, 21099}
	}
	if c.Greeting == "" {
		c.Greeting = GreetingChime
	}
}

// Validate checks the section, enabled or not, and reports every problem
// with its key (relative to the section).
func (c *Config) Validate() error {
	var errs []error
	if _, err := c.ListenAddr(); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	lo, hi := c.RTPPortRange[0], c.RTPPortRange[1]
	if lo < 1024 || hi > 65535 || lo > hi || hi-lo < 3 {
		errs = append(errs, fmt.Errorf("rtp_port_range: [%d, %d] must be within 1024-65535 with at least 4 ports", lo, hi))
	}
	if g := c.Greeting; g != GreetingChime && g != GreetingNone && !strings.HasSuffix(strings.ToLower(g), ".wav") {
		errs = append(errs, fmt.Errorf("greeting: %q: %w", g, ErrGreeting))
	}
	return errors.Join(errs...)
}

// ListenAddr parses Listen; it fails unless the host is a loopback IP
// address ("localhost" is accepted as 127.0.0.1) and the port is set.
func (c *Config) ListenAddr() (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want host:port", c.Listen)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("%q: %w", c.Listen, ErrNotLoopback)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%q: port must be 0-65535 (0 picks a free one)", c.Listen)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}
