package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

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
			cfg, err := loadConfigFor(cmd, path, "not reloaded")
			if err != nil {
				return err
			}
			base, err := adminBase(cfg, "config reload")
			if err != nil {
				return fmt.Errorf("%w; send SIGHUP to the gateway instead", err)
			}
			status, body, err := adminCall(cmd.Context(), base, http.MethodPost, "/admin/reload", "config reload")
			if err != nil {
				return err
			}
			if status != http.StatusOK {
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
