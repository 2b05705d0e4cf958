package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/sip/demophone"
)

func newDemoPhoneCmd() *cobra.Command {
	var path, listen, greeting string
	cmd := &cobra.Command{
		Use:   "demo-phone",
		Short: "Run the demo desk phone alone: it answers, greets, then echoes the caller",
		Long: `Run the demo desk phone: a small SIP phone on a loopback address that
answers every call from this machine's gateway with G.711, plays a short
greeting (a chime, or a WAV file) and then sends the caller's own audio
back, like a PBX's echo test. It is a demo, not a phone system: it lets
you hear a call through the gateway without a PBX.

"segue serve" starts it by itself when demo_phone.enabled is true; this
command runs it on its own, from the demo_phone section of the
configuration (enabled or not), with flags taking precedence.`,
		Example: "  segue demo-phone --config configs/segue.yaml\n  segue demo-phone --listen 127.0.0.1:5080 --greeting none",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var dc demophone.Config
			logCfg := gateway.LogConfig{Level: "info", Format: "text"}
			if _, err := os.Stat(path); err == nil || cmd.Flags().Changed("config") {
				cfg, err := gateway.LoadConfig(path)
				if err != nil {
					return fmt.Errorf("%s:\n%w", path, err)
				}
				dc, logCfg = cfg.DemoPhone, cfg.Log
			}
			if listen != "" {
				dc.Listen = listen
			}
			if greeting != "" {
				dc.Greeting = greeting
			}
			dc.ApplyDefaults()
			log := newLogger(cmd.ErrOrStderr(), logCfg)
			phone, err := demophone.New(dc, log.With("component", "demo-phone"))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := phone.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "config", "c", defaultConfig, "configuration file whose demo_phone section to use (skipped when the default is absent)")
	f.StringVar(&listen, "listen", "", "loopback host:port to listen on (UDP), e.g. 127.0.0.1:5080")
	f.StringVar(&greeting, "greeting", "", "chime, none, or a WAV file")
	return cmd
}
