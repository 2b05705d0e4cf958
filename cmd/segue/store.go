package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/store"
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Administer the store (database)",
	}
	cmd.AddCommand(newStoreMigrateCmd())
	return cmd
}

func newStoreMigrateCmd() *cobra.Command {
	var path string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the store's schema up to date and print its version",
		Long: `Bring the schema of the store the configuration names up to date, as
"segue serve" does when it starts, and print the schema version before and
after. With driver postgres the steps run in one transaction under an
advisory lock, so running it while gateways start is safe; a database that
a newer release migrated is refused. With sqlite the schema has no
versions: the file is created if missing.`,
		Example: "  segue store migrate --config configs/segue.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := store.Migrate(ctx, cfg.Store)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			where := cfg.Store.Driver + " " + cfg.Store.Where()
			switch {
			case !res.Versioned:
				_, err = fmt.Fprintf(w, "%s: schema created as it opens (no versions)\n", where)
			case res.From == res.To:
				_, err = fmt.Fprintf(w, "%s: schema at version %d, up to date\n", where, res.To)
			default:
				_, err = fmt.Fprintf(w, "%s: schema migrated from version %d to %d\n", where, res.From, res.To)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long (waiting for the database or for another gateway's migration)")
	return cmd
}
