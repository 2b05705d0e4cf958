package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/sip"
)

func newTrunkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trunk",
		Short: "Check SIP trunks",
	}
	var path string
	check := &cobra.Command{
		Use:   "check NAME",
		Short: "Check that a trunk answers and accepts our registration",
		Long: `Check a trunk before going live: resolve its host, connect (with the TLS
handshake for tls trunks), send OPTIONS and, when the trunk registers,
REGISTER and remove the binding again. Each step is printed with its
timing, then a verdict. The exit status is 0 when the trunk is usable.
It runs on ephemeral ports, so it can run beside "segue serve".`,
		Example: "  segue trunk check pbx --config configs/segue.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			tc, err := findTrunk(cfg, args[0])
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), gateway.LogConfig{Level: "warn"})
			ctx, stop := context.WithTimeout(cmd.Context(), time.Minute)
			defer stop()
			rep, err := sip.CheckTrunk(ctx, cfg.SIP, tc, log.With("component", "trunk-check"))
			if err != nil {
				return err
			}
			if _, err := rep.WriteTo(cmd.OutOrStdout()); err != nil {
				return err
			}
			if !rep.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	check.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.AddCommand(check)
	return cmd
}

func findTrunk(cfg *gateway.Config, name string) (sip.TrunkConfig, error) {
	for _, t := range cfg.Trunks {
		if t.Name == name {
			return t, nil
		}
	}
	names := make([]string, 0, len(cfg.Trunks))
	for _, t := range cfg.Trunks {
		names = append(names, t.Name)
	}
	return sip.TrunkConfig{}, fmt.Errorf("no trunk %q in the configuration (have %v)", name, names)
}
