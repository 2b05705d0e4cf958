//go:build e2e && cluster

package test

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// TestChatLoadAcrossNodes runs bench/chatload against two nodes on one
// PostgreSQL and one nats-server: Alice signs in on node 2, the customers
// alternate between node 1 (every message crosses NATS to her) and node 2.
// It measures rather than checks (make bench-chat-cluster; not part of
// make test-cluster): CUSTOMERS and MSGS set the load; ONE_NODE=1 points
// everything at node 1, for the same store without the crossing.
func TestChatLoadAcrossNodes(t *testing.T) {
	customers, msgs := envInt("CUSTOMERS", 100), envInt("MSGS", 40)
	c := startCluster(t, 2, func(o *gatewayOptions) {
		o.maxChats = customers + 10
		o.newChatsPerMin = 100000
		o.logLevel = "warn"
		o.httpYAML += "  max_connections_per_ip: 0\n"
		o.queueYAML += "    max_waiting: 5000\n"
		o.limitsYAML += "  max_conversations: 100000\n  messages_per_socket_per_second: 1000000\n" +
			"  bytes_per_socket_per_second: 100000000\n  max_sockets_per_ip: 5000\n  max_messages_per_conversation: 20000\n"
	})
	urls := c.nodes[0].URL + "," + c.nodes[1].URL
	if os.Getenv("ONE_NODE") == "1" {
		urls = c.nodes[0].URL
	}
	cmd := exec.Command("go", "run", "./bench/chatload", "-url", urls,
		"-agent", "alice", "-password", agentPasswords["alice"],
		"-customers", strconv.Itoa(customers), "-messages", strconv.Itoa(msgs))
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	t.Logf("chatload on %s, %d customers x %d messages:\n%s", urls, customers, msgs, out)
	if err != nil {
		t.Fatal(err)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
