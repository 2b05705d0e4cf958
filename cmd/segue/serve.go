package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/sip/demophone"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/webrtc"
)

const defaultConfig = "configs/segue.yaml"

func newServeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Long: `Run the gateway: the web server with the widget, the agent console and the
API, and the SIP side. It stops gracefully on SIGINT or SIGTERM: it refuses
new chats and calls (503), plays a short notice to the calls in progress
and hangs them up, closes client connections with a reason the widget
shows, and flushes the store, within http.drain_timeout (default 10s).
SIGHUP reloads the configuration file without dropping chats or calls
(see "segue config reload").`,
		Example: "  segue serve --config configs/segue.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			for _, w := range configWarnings(path, cfg) {
				log.Warn(w)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, log, gateway.WithConfigFile(path))
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	return cmd
}

func serve(ctx context.Context, cfg *gateway.Config, log *slog.Logger, extra ...gateway.Option) error {
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	log.Info("store open", "driver", cfg.Store.Driver, "database", cfg.Store.Where())
	// WebRTC serves video from the chat on its own; voice needs trunks too.
	var wopts []webrtc.Option
	if cfg.WebRTC.LoopbackCandidates {
		wopts = append(wopts, webrtc.WithLoopbackCandidates())
	}
	eng, err := webrtc.New(cfg.WebRTC, log.With("component", "webrtc"), wopts...)
	if err != nil {
		st.Close()
		return err
	}
	opts := []gateway.Option{gateway.WithWebRTC(eng)}
	var sipSrv *sip.Server
	if len(cfg.Trunks) > 0 {
		sipSrv, err = sip.New(cfg.SIP, cfg.Trunks, sip.WithLogger(log.With("component", "sip")), sip.WithMaxCalls(cfg.Limits.MaxCalls))
		if err != nil {
			st.Close()
			return err
		}
		opts = append(opts, gateway.WithSIP(sipSrv))
	}
	if cfg.Cluster.Enabled() {
		cc, err := gateway.DialCluster(&cfg.Cluster)
		if err != nil {
			st.Close()
			return err
		}
		defer cc.Close()
		opts = append(opts, gateway.WithCluster(cc))
		log.Info("cluster node", "node_id", cfg.Cluster.NodeID)
	}
	srv, err := gateway.New(cfg, st, log, append(opts, extra...)...)
	if err != nil {
		st.Close()
		return err
	}
	var phone *demophone.Phone
	if cfg.DemoPhone.Enabled {
		if phone, err = demophone.New(cfg.DemoPhone, log.With("component", "demo-phone")); err != nil {
			st.Close()
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	// The SIP side outlives the gateway's drain, so that calls hear the
	// stop notice and get their BYE, and INVITEs meanwhile get 503.
	sipCtx, stopSIP := context.WithCancel(context.WithoutCancel(gctx))
	defer stopSIP()
	g.Go(func() error { defer stopSIP(); return srv.Run(gctx) })
	g.Go(func() error { tuneGC(gctx, log); return nil })
	if sipSrv != nil {
		g.Go(func() error { return sipSrv.Run(sipCtx) })
	}
	if phone != nil {
		g.Go(func() error { return phone.Run(gctx) })
	}
	// SIGHUP reloads the configuration file (agents, queues, recording);
	// an invalid file is logged and the running configuration stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				log.Info("SIGHUP: reloading the configuration")
				_, _ = srv.ReloadFile(gctx)
			}
		}
	})
	runErr := g.Wait()
	if err := eng.Close(); err != nil {
		log.Error("webrtc engine not closed cleanly", "err", err)
	}
	if err := st.Close(); err != nil {
		log.Error("store not closed cleanly", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	log.Info("stopped")
	return runErr
}

func newLogger(w io.Writer, cfg gateway.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// configWarnings lists what the admin should fix in the configuration at
// path: settings that work but are risky, and a file that every user of
// the machine may read although it holds secrets.
func configWarnings(path string, cfg *gateway.Config) []string {
	w := cfg.Warnings()
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 && cfg.HoldsSecrets() {
		w = append(w, fmt.Sprintf("%s is readable by every user of this machine (mode %04o) and may hold secrets "+
			"(password hashes, trunk passwords, TURN and identity secrets); run: chmod o-rwx %s", path, fi.Mode().Perm(), path))
	}
	return w
}
