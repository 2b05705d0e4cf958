package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
)

// The commands that talk to a running gateway do so through its admin
// listener (http.admin_listen), which they find in the same
// configuration file the gateway reads.

// adminTimeout bounds one request to the admin listener.
const adminTimeout = 30 * time.Second

// loadConfigFor loads the configuration at path for command what; an
// invalid one is printed, problem by problem, and gives exit code 1.
func loadConfigFor(cmd *cobra.Command, path, what string) (*gateway.Config, error) {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		w := cmd.ErrOrStderr()
		fmt.Fprintf(w, "%s: invalid configuration, %s:\n", path, what)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(w, "  - %s\n", line)
		}
		return nil, exitError{code: 1}
	}
	return cfg, nil
}

// adminBase is the base URL of cfg's admin listener, on this machine
// when it listens on every address; name prefixes errors.
func adminBase(cfg *gateway.Config, name string) (string, error) {
	addr := cfg.HTTP.AdminListen
	if addr == "" || addr == "off" {
		return "", fmt.Errorf("%s: http.admin_listen is off", name)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s: http.admin_listen %q: %w", name, addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// adminCall sends method to the admin listener's path (query included)
// and returns the status and up to 1 MiB of the body; name prefixes
// errors.
func adminCall(ctx context.Context, base, method, path, name string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: is the gateway running? %w", name, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s: answer: %w", name, err)
	}
	return res.StatusCode, body, nil
}

// adminRefusal is the message of an error answer of the admin listener:
// the API's {"error": {"message"}} when it is one, else the body.
func adminRefusal(status int, body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return fmt.Sprintf("%d %s", status, e.Error.Message)
	}
	return fmt.Sprintf("%d %s", status, strings.TrimSpace(string(body)))
}
