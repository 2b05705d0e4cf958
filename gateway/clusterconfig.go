package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
)

// ClusterConfig is the "cluster" section: several gateways sharing one
// PostgreSQL store and one NATS server (docs/scaling.md). Left out, the
// gateway is a single node with an in-process bus.
type ClusterConfig struct {
	// NodeID names this gateway among the cluster's nodes; it is unique,
	// stable across restarts, and made of letters, digits, "-" and "_".
	NodeID string `yaml:"node_id"`
	// NATSURL is the NATS server the nodes share, e.g.
	// "nats://127.0.0.1:4222" (several comma-separated for a NATS cluster).
	NATSURL string `yaml:"nats_url"`
	// Advertise are this node's addresses as the other nodes and
	// Kamailio reach them.
	Advertise AdvertiseConfig `yaml:"advertise"`
	// NATSToken is the token NATS asks of its clients (authorization
	// token in nats-server's config); ${NAME} is expanded from the
	// environment. Optional; at most one of nats_token and
	// nats_credentials.
	NATSToken string `yaml:"nats_token"`
	// NATSCredentials is the path of a NATS credentials file (a user JWT
	// and its NKey seed, as "nsc generate creds" writes it). Optional.
	NATSCredentials string `yaml:"nats_credentials"`
}

// AdvertiseConfig is cluster.advertise.
type AdvertiseConfig struct {
	// HTTP is this node's base URL for the other nodes (optional).
	HTTP string `yaml:"http"`
	// SIP is this node's SIP URI, where another node redirects a PBX's
	// INVITE for a conversation this node holds, e.g.
	// "sip:10.0.0.2:5060" (optional; without it redirects are refused).
	SIP string `yaml:"sip"`
}

// Enabled reports whether the section is set.
func (c *ClusterConfig) Enabled() bool { return *c != ClusterConfig{} }

var nodeIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

// sockIDRe is a console socket id as another node names it: one NATS
// subject token, with no wildcard.
var sockIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validate reports every problem in c, naming keys relative to "cluster".
func (c *ClusterConfig) validate(storeDriver string) error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if !nodeIDRe.MatchString(c.NodeID) {
		errs = append(errs, fmt.Errorf("node_id: %q must be 1 to 32 letters, digits, '-' or '_'", c.NodeID))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("nats_url: required"))
	} else if u, err := url.Parse(c.NATSURL); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		errs = append(errs, fmt.Errorf("nats_url: %q is not a nats:// or tls:// URL", c.NATSURL))
	}
	if c.Advertise.HTTP != "" {
		if u, err := url.Parse(c.Advertise.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("advertise.http: %q is not an http:// or https:// URL", c.Advertise.HTTP))
		}
	}
	if c.Advertise.SIP != "" {
		if u, err := url.Parse(c.Advertise.SIP); err != nil || (u.Scheme != "sip" && u.Scheme != "sips") || u.Opaque == "" {
			errs = append(errs, fmt.Errorf("advertise.sip: %q is not a sip: URI", c.Advertise.SIP))
		}
	}
	if c.NATSToken != "" && c.NATSCredentials != "" {
		errs = append(errs, errors.New("nats_credentials: set nats_token or nats_credentials, not both"))
	}
	if c.NATSCredentials != "" {
		if _, err := os.Stat(c.NATSCredentials); err != nil {
			errs = append(errs, fmt.Errorf("nats_credentials: %w", err))
		}
	}
	if storeDriver != "postgres" {
		errs = append(errs, fmt.Errorf("node_id: a cluster needs store.driver postgres (the nodes share it), not %q", storeDriver))
	}
	return errors.Join(errs...)
}
