package gateway

import (
	"strings"
	"testing"
)

// TestAgentRole: agents[].role defaults to agent, takes supervisor, and
// anything else is an error naming the key.
func TestAgentRole(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agents[0].Supervisor() {
		t.Error("an agent without role is a supervisor")
	}
	doc := strings.Replace(validYAML, "    queues: [support]\n", "    queues: [support]\n    role: supervisor\n", 1)
	if cfg, err = ParseConfig([]byte(doc), testEnv); err != nil {
		t.Fatal(err)
	}
	if !cfg.Agents[0].Supervisor() {
		t.Error("role: supervisor is not a supervisor")
	}
	doc = strings.Replace(validYAML, "    queues: [support]\n", "    queues: [support]\n    role: boss\n", 1)
	_, err = ParseConfig([]byte(doc), testEnv)
	if want := `agents[0].role: "boss" is not one of agent, supervisor`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}
