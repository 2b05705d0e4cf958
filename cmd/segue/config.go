package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/configs"
	"github.com/segue-rtc/segue/gateway"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or create the configuration file",
	}
	cmd.AddCommand(newConfigValidateCmd(), newConfigInitCmd())
	return cmd
}

func newConfigValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file and summarise it",
		Long: `Check a configuration file. On success it prints a short summary and exits 0;
otherwise it lists every problem, each naming its YAML path, and exits 1.
Environment variables named in secret fields (${NAME}) must be set.`,
		Example: "  segue config validate --config configs/segue.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				w := cmd.ErrOrStderr()
				fmt.Fprintf(w, "%s: invalid configuration:\n", path)
				for _, line := range strings.Split(err.Error(), "\n") {
					fmt.Fprintf(w, "  - %s\n", line)
				}
				return exitError{code: 1}
			}
			printSummary(cmd, path, cfg)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	return cmd
}

func printSummary(cmd *cobra.Command, path string, cfg *gateway.Config) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s: OK\n", path)
	fmt.Fprintf(w, "  http:   %s (public %s)\n", cfg.HTTP.Listen, cfg.HTTP.PublicURL)
	fmt.Fprintf(w, "  store:  %s %s, files in %s\n", cfg.Store.Driver, cfg.Store.DSN, cfg.Store.FilesDir)
	fmt.Fprintf(w, "  sip:    %s\n", strings.Join(cfg.SIP.Listen, ", "))
	fmt.Fprintf(w, "  trunks: %d\n", len(cfg.Trunks))
	for _, t := range cfg.Trunks {
		reg := ""
		if t.Register {
			reg = ", registers"
		}
		fmt.Fprintf(w, "    - %s: %s over %s%s\n", t.Name, t.URI, t.Transport, reg)
	}
	fmt.Fprintf(w, "  queues: %d\n", len(cfg.Queues))
	for _, q := range cfg.Queues {
		dial := ""
		if q.Dial != "" {
			dial = " dials " + q.Dial
		}
		fmt.Fprintf(w, "    - %s%s\n", q.Name, dial)
	}
	fmt.Fprintf(w, "  agents: %d\n", len(cfg.Agents))
	for _, a := range cfg.Agents {
		phone := ""
		if a.Phone != "" {
			phone = ", phone " + a.Phone
		}
		fmt.Fprintf(w, "    - %s (%s) in %s%s\n", a.ID, a.Name, strings.Join(a.Queues, ", "), phone)
	}
}

func newConfigInitCmd() *cobra.Command {
	var path string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the documented example configuration",
		Long: `Write the documented example configuration, which runs as it is: embedded
SQLite under ./data, one queue and a demo agent. It refuses to overwrite an
existing file unless --force is given.`,
		Example: "  segue config init --config /etc/segue/segue.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return err
			}
			f, err := os.OpenFile(path, flags, 0o640)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; use --force to overwrite it", path)
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(configs.Example); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "segue.yaml", "where to write the file")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}
