// Command segue runs and administers the Segue gateway: chat on a website
// escalated to a voice call on the contact center's phones, then to video.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code out of a command without printing twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "segue:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "segue",
		Short: "Segue: website chat that escalates to a voice call on your phones, then to video",
		Long: `Segue is a gateway between a website's live chat and a contact center.
Customers chat through a widget; one click turns the chat into a voice call
that rings the same agent's desk phone over SIP, and another adds video.

Everything is configured in one YAML file (see "segue config init").`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newConfigCmd(), newAgentCmd(), newTrunkCmd(), newCallCmd(), newVersionCmd())
	root.AddCommand(newDemoPhoneCmd(), newStoreCmd())
	root.AddCommand(newAPIKeyCmd())
	root.AddCommand(newDataCmd())
	root.AddCommand(newWebhooksCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "segue %s\n", version)
			return err
		},
	}
}
