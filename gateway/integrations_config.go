package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// IntegrationsConfig is the "integrations" section: the API keys of the
// systems that read and act on conversations (a CRM, a helpdesk), and the
// webhooks that tell them what happens (docs/integrations.md).
type IntegrationsConfig struct {
	// APIKeys are the keys accepted on /api/v1/integrations, each with
	// its scopes; `segue apikey new` makes one.
	APIKeys []APIKeyConfig `yaml:"api_keys"`
	// Webhooks are the URLs that receive events.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// WebhookMaxAttempts is how many times an event is tried before it is
	// set aside as dead (default 12); the conversation's later events go
	// on.
	WebhookMaxAttempts int `yaml:"webhook_max_attempts"`
	// WebhookRetryMin and WebhookRetryMax bound the wait between attempts,
	// which doubles from the first to the second (defaults 1s and 10m).
	WebhookRetryMin time.Duration `yaml:"webhook_retry_min"`
	WebhookRetryMax time.Duration `yaml:"webhook_retry_max"`
	// WebhookTimeout bounds one delivery attempt, from connecting to the
	// end of the reply (default 10s).
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
}

// APIKeyConfig is one entry of integrations.api_keys.
type APIKeyConfig struct {
	// Name says whose key it is in logs and in the messages it posts.
	Name string `yaml:"name"`
	// KeyHash is "sha256:" and the hex SHA-256 of the key; the key itself
	// is shown once by `segue apikey new` and stored nowhere.
	KeyHash string `yaml:"key_hash"`
	// Scopes are what the key may do: ScopeConversationsRead,
	// ScopeConversationsWrite, ScopeRecordingsRead, ScopeDataErase.
	Scopes []string `yaml:"scopes"`
	// Expires, when set, is when the key stops working (RFC 3339).
	Expires time.Time `yaml:"expires"`
}

// WebhookConfig is one entry of integrations.webhooks.
type WebhookConfig struct {
	// Name identifies the webhook in the outbox and the metrics; events
	// owed to it wait under this name across restarts.
	Name string `yaml:"name"`
	// URL receives each event as a POST; http or https.
	URL string `yaml:"url"`
	// Events are the event types sent ("*" for all of them).
	Events []string `yaml:"events"`
	// Secret signs each delivery (Segue-Signature); ${NAME} takes it from
	// the environment.
	Secret string `yaml:"secret"`
}

// API key scopes.
const (
	ScopeConversationsRead  = "conversations:read"
	ScopeConversationsWrite = "conversations:write"
	ScopeRecordingsRead     = "recordings:read"
	// ScopeDataErase allows erasing a customer's data. It is a scope of
	// its own, given to no key by the others: erasure cannot be undone.
	ScopeDataErase = "data:erase"
)

// Scopes lists every API key scope.
var Scopes = []string{ScopeConversationsRead, ScopeConversationsWrite, ScopeRecordingsRead, ScopeDataErase}

// WebhookEvents lists every webhook event type.
var WebhookEvents = []string{
	"conversation.created", "conversation.assigned", "conversation.transferred", "conversation.ended",
	"message.created", "file.uploaded",
	"call.ringing", "call.connected", "call.ended",
	"video.started", "video.ended",
	"recording.ready",
}

// APIKeyPrefix starts every API key, so that a key pasted in the wrong
// place is recognisable (and findable by secret scanners).
const APIKeyPrefix = "sgk_"

// HashAPIKey is the key_hash of key: "sha256:" and its hex SHA-256. A
// fast hash suits a key of 256 random bits, which no one can guess from
// its hash, where a password needs bcrypt; it keeps each API request from
// spending bcrypt's tens of milliseconds.
func HashAPIKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(h[:])
}

var keyHashRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (c *IntegrationsConfig) applyDefaults() {
	if c.WebhookMaxAttempts == 0 {
		c.WebhookMaxAttempts = 12
	}
	if c.WebhookRetryMin == 0 {
		c.WebhookRetryMin = time.Second
	}
	if c.WebhookRetryMax == 0 {
		c.WebhookRetryMax = 10 * time.Minute
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = 10 * time.Second
	}
}

// validate checks the section; errors name keys relative to it.
func (c *IntegrationsConfig) validate() error {
	var errs []error
	addf := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	names := map[string]bool{}
	hashes := map[string]bool{}
	for i, k := range c.APIKeys {
		p := fmt.Sprintf("api_keys[%d]", i)
		switch {
		case k.Name == "":
			addf("%s.name: required", p)
		case !idRe.MatchString(k.Name):
			addf("%s.name: %q may hold only letters, digits, '_', '.', '-'", p, k.Name)
		case names[k.Name]:
			addf("%s.name: duplicate key name %q", p, k.Name)
		}
		names[k.Name] = true
		switch {
		case k.KeyHash == "":
			addf("%s.key_hash: required (make a key with `segue apikey new`)", p)
		case !keyHashRe.MatchString(k.KeyHash):
			addf("%s.key_hash: not \"sha256:\" and 64 hex digits (make a key with `segue apikey new`)", p)
		case hashes[k.KeyHash]:
			addf("%s.key_hash: the same key as another entry", p)
		}
		hashes[k.KeyHash] = true
		if len(k.Scopes) == 0 {
			addf("%s.scopes: at least one of %s", p, strings.Join(Scopes, ", "))
		}
		for j, s := range k.Scopes {
			if !slices.Contains(Scopes, s) {
				addf("%s.scopes[%d]: %q is not one of %s", p, j, s, strings.Join(Scopes, ", "))
			}
		}
	}
	hooks := map[string]bool{}
	for i, h := range c.Webhooks {
		p := fmt.Sprintf("webhooks[%d]", i)
		switch {
		case h.Name == "":
			addf("%s.name: required", p)
		case !idRe.MatchString(h.Name):
			addf("%s.name: %q may hold only letters, digits, '_', '.', '-'", p, h.Name)
		case hooks[h.Name]:
			addf("%s.name: duplicate webhook %q", p, h.Name)
		}
		hooks[h.Name] = true
		if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			addf("%s.url: %q is not an http:// or https:// URL", p, h.URL)
		} else if u.User != nil {
			addf("%s.url: must not carry a user or password (the secret signs each delivery)", p)
		}
		if len(h.Events) == 0 {
			addf("%s.events: at least one event, or \"*\" for all", p)
		}
		for j, e := range h.Events {
			if e != "*" && !slices.Contains(WebhookEvents, e) {
				addf("%s.events[%d]: unknown event %q", p, j, e)
			}
		}
		if len(h.Secret) < 16 {
			addf("%s.secret: required, at least 16 characters", p)
		}
	}
	if c.WebhookMaxAttempts < 1 {
		addf("webhook_max_attempts: must be positive")
	}
	if c.WebhookRetryMin <= 0 {
		addf("webhook_retry_min: must be a positive duration such as 1s")
	}
	if c.WebhookRetryMax < c.WebhookRetryMin {
		addf("webhook_retry_max: must be at least webhook_retry_min")
	}
	if c.WebhookTimeout <= 0 {
		addf("webhook_timeout: must be a positive duration such as 10s")
	}
	return errors.Join(errs...)
}

// ValidateIntegrations checks an integrations section alone, with the
// defaults applied; errors name keys under "integrations.".
func ValidateIntegrations(c IntegrationsConfig) error {
	c.applyDefaults()
	return errors.Join(prefixErrors("integrations.", c.validate())...)
}

// wants reports whether the webhook receives events of type typ.
func (h *WebhookConfig) wants(typ string) bool {
	return slices.Contains(h.Events, "*") || slices.Contains(h.Events, typ)
}
