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

func newConfigReloadCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running gateway read its configuration file again",
		Long: `Ask the running gateway, through its admin listener (http.admin_listen),
to read its configuration file again and apply agents, queues and the
recording settings without dropping chats or calls; sending it SIGHUP does
the same. An invalid file is refused with the same problems as
"segue config validate" lists, and the gateway keeps its running
configuration. Changed sections that need a restart are named.`,
		Example: "  segue config reload --config /etc/segue/segue.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				w := cmd.ErrOrStderr()
				fmt.Fprintf(w, "%s: invalid configuration, not reloaded:\n", path)
				for _, line := range strings.Split(err.Error(), "\n") {
					fmt.Fprintf(w, "  - %s\n", line)
				}
				return exitError{code: 1}
			}
			addr := cfg.HTTP.AdminListen
			if addr == "" || addr == "off" {
				return fmt.Errorf("config reload: http.admin_listen is off; send SIGHUP to the gateway instead")
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("config reload: http.admin_listen %q: %w", addr, err)
			}
			switch host {
			case "", "0.0.0.0":
				host = "127.0.0.1"
			case "::":
				host = "::1"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+net.JoinHostPort(host, port)+"/admin/reload", nil)
			if err != nil {
				return err
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("config reload: is the gateway running? %w", err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			if res.StatusCode != http.StatusOK {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s", body)
				return exitError{code: 1}
			}
			var r gateway.ReloadResult
			if err := json.Unmarshal(body, &r); err != nil {
				return fmt.Errorf("config reload: answer: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "reloaded")
			for _, l := range []struct {
				what string
				ids  []string
			}{
				{"agents added", r.AgentsAdded}, {"agents changed", r.AgentsChanged},
				{"agents removed (signed out once their conversations end)", r.AgentsRemoved},
				{"queues added", r.QueuesAdded}, {"queues changed", r.QueuesChanged}, {"queues removed", r.QueuesRemoved},
				{"changed, applied at the next restart", r.Restart},
			} {
				if len(l.ids) > 0 {
					fmt.Fprintf(w, "  %s: %s\n", l.what, strings.Join(l.ids, ", "))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	return cmd
}
