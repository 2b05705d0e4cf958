package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func newCallCmd() *cobra.Command {
	var (
		path, trunk, play, record, dtmf, display string
		tone                                     float64
		duration                                 time.Duration
		headers                                  []string
	)
	cmd := &cobra.Command{
		Use:   "call --trunk NAME SIP-URI",
		Short: "Place a test call through a trunk and measure what comes back",
		Long: `Place a real call through a configured trunk, carrying the same context
headers the gateway sends, play a WAV file or a tone, send DTMF, record what
the far end sends, then print the codec, RTP statistics (packets, loss,
jitter) and the level and peak frequency of what was heard.`,
		Example: `  segue call --trunk pbx sip:1001@pbx.example.com --tone 1000 --dtmf 123# --duration 10s
  segue call --trunk carrier tel:+34911234567 --play hello.wav --record heard.wav`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			if _, err := findTrunk(cfg, trunk); err != nil {
				return err
			}
			opts := sip.TestCallOptions{Trunk: trunk, Target: args[0], ToneHz: tone, DTMF: dtmf, Duration: duration, DisplayName: display,
				Headers: map[string]string{"X-Segue-Test": "segue call"}}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("--header %q: want Name: value", h)
				}
				opts.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			if play != "" {
				pcm, rate, err := audiotest.ReadWAVFile(play)
				if err != nil {
					return fmt.Errorf("--play %s: %w", play, err)
				}
				if opts.Play, err = to8k(pcm, rate); err != nil {
					return fmt.Errorf("--play %s: %w", play, err)
				}
			}
			out := cmd.OutOrStdout()
			opts.Progress = func(p sip.Progress) {
				media := ""
				if p.EarlyMedia {
					media = " (early media)"
				}
				fmt.Fprintf(out, "%d %s%s\n", p.Code, p.Reason, media)
			}
			log := newLogger(cmd.ErrOrStderr(), gateway.LogConfig{Level: "warn"})
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, duration+2*time.Minute)
			defer cancel()
			rep, err := sip.PlaceTestCall(ctx, cfg.SIP, cfg.Trunks, opts, log.With("component", "test-call"))
			if err != nil {
				return err
			}
			if _, err := rep.WriteTo(out); err != nil {
				return err
			}
			if record != "" {
				if err := audiotest.WriteWAVFile(record, rep.Heard, 8000); err != nil {
					return fmt.Errorf("--record %s: %w", record, err)
				}
				fmt.Fprintf(out, "recorded %s\n", record)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	f.StringVar(&trunk, "trunk", "", "trunk to call through (required)")
	f.StringVar(&play, "play", "", "WAV file to play (16-bit mono)")
	f.Float64Var(&tone, "tone", 0, "play a sine tone of this frequency in Hz")
	f.StringVar(&record, "record", "", "write what the far end sent to this WAV file")
	f.StringVar(&dtmf, "dtmf", "", "DTMF digits to send one second after answer (RFC 4733)")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to stay connected")
	f.StringVar(&display, "display-name", "Segue test call", "From display name")
	f.StringArrayVar(&headers, "header", nil, `extra header, e.g. "Call-Info: <https://example.com>;purpose=info" (repeatable)`)
	_ = cmd.MarkFlagRequired("trunk")
	return cmd
}

// to8k converts a recording to 8 kHz for the phone leg.
func to8k(pcm transcode.PCM16, rate int) (transcode.PCM16, error) {
	if rate == 8000 {
		return pcm, nil
	}
	var out collect
	w := transcode.Resample(&out, rate)
	for i := 0; i < len(pcm); i += rate / 50 {
		if err := w.WriteSample(pcm[i:min(i+rate/50, len(pcm))]); err != nil {
			return nil, err
		}
	}
	return out.s, nil
}

type collect struct{ s transcode.PCM16 }

func (c *collect) WriteSample(p transcode.PCM16) error { c.s = append(c.s, p...); return nil }
func (c *collect) SampleRate() int                     { return 8000 }
func (c *collect) String() string                      { return "collect" }
func (c *collect) Close() error                        { return nil }
