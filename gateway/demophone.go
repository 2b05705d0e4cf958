package gateway

import (
	"fmt"
	"net"
	"strings"
)

// validateDemoPhone checks the demo_phone section: its own keys, and when
// it is enabled, RTP ports apart from the gateway's.
func (c *Config) validateDemoPhone() []error {
	errs := prefixErrors("demo_phone.", c.DemoPhone.Validate())
	d, s := c.DemoPhone.RTPPortRange, c.SIP.RTPPortRange
	if c.DemoPhone.Enabled && d[0] <= s[1] && s[0] <= d[1] {
		errs = append(errs, fmt.Errorf("demo_phone.rtp_port_range: [%d, %d] overlaps sip.rtp_port_range [%d, %d]", d[0], d[1], s[0], s[1]))
	}
	return errs
}

// DemoTrunk is the name of the trunk that leads to the enabled demo
// phone (its uri names demo_phone.listen), or "" when there is none.
func (c *Config) DemoTrunk() string {
	if !c.DemoPhone.Enabled {
		return ""
	}
	phone, err := c.DemoPhone.ListenAddr()
	if err != nil {
		return ""
	}
	for _, t := range c.Trunks {
		hostport := strings.TrimPrefix(strings.TrimPrefix(t.URI, "sip:"), "sips:")
		hostport, _, _ = strings.Cut(hostport, ";")
		if _, after, ok := strings.Cut(hostport, "@"); ok {
			hostport = after
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			continue
		}
		if host == "localhost" {
			host = "127.0.0.1"
		}
		if net.JoinHostPort(host, port) == phone.String() {
			return t.Name
		}
	}
	return ""
}
