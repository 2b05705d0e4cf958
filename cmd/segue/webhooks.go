package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
)

// maxDeadShown is how many dead events one listing of the admin listener
// holds at most (its own bound).
const maxDeadShown = 1000

func newWebhooksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "List and replay webhook events that were never delivered",
		Long: `A webhook event that failed integrations.webhook_max_attempts times is
dead: kept in the outbox, no longer tried (segue_webhook_dead_letters counts
them). These commands ask the running gateway, through its admin listener
(http.admin_listen), to list them and to send them again.`,
	}
	cmd.AddCommand(newWebhooksDeadCmd(), newWebhooksReplayCmd())
	return cmd
}

func newWebhooksDeadCmd() *cobra.Command {
	var path, webhook string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List the dead webhook events, oldest first",
		Long: `List the dead webhook events, oldest first: seq (what "segue webhooks
replay --seq" takes), webhook, conversation, event type, when the event
happened, attempts made and the last attempt's error.`,
		Example: "  segue webhooks dead --webhook crm --config /etc/segue/segue.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			const name = "webhooks dead"
			cfg, err := loadConfigFor(cmd, path, "not read")
			if err != nil {
				return err
			}
			base, err := adminBase(cfg, name)
			if err != nil {
				return err
			}
			q := url.Values{}
			if webhook != "" {
				q.Set("webhook", webhook)
			}
			status, body, err := adminCall(cmd.Context(), base, http.MethodGet, "/admin/webhooks/dead?"+q.Encode(), name)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("%s: the gateway refused: %s", name, adminRefusal(status, body))
			}
			var res struct {
				Events []gateway.DeadEvent `json:"events"`
			}
			if err := json.Unmarshal(body, &res); err != nil {
				return fmt.Errorf("%s: answer: %w", name, err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(res.Events)
			}
			if len(res.Events) == 0 {
				if webhook != "" {
					fmt.Fprintf(w, "no dead events for webhook %s\n", webhook)
				} else {
					fmt.Fprintln(w, "no dead events")
				}
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tWEBHOOK\tCONVERSATION\tTYPE\tCREATED\tATTEMPTS\tLAST ERROR")
			for _, e := range res.Events {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Seq, e.Webhook, e.Conversation, e.Type,
					e.CreatedAt.UTC().Format(time.RFC3339), e.Attempts, oneLine(e.LastError))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(res.Events) >= maxDeadShown {
				fmt.Fprintf(w, "(the oldest %d; replay them to see the rest)\n", len(res.Events))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.Flags().StringVar(&webhook, "webhook", "", "only this webhook's events (default: every webhook's)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the events as a JSON array")
	return cmd
}

func newWebhooksReplayCmd() *cobra.Command {
	var path, webhook string
	var seq int64
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Send dead webhook events again",
		Long: `Make a webhook's dead events pending again: due at once, with a fresh
count of attempts. Without --seq, every dead event of the webhook; with it,
that one only (an error when it is not a dead event of the webhook). A
replayed event arrives after the later events of its conversation that got
through meanwhile.`,
		Example: "  segue webhooks replay --webhook crm\n  segue webhooks replay --webhook crm --seq 4711",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			const name = "webhooks replay"
			if cmd.Flags().Changed("seq") && seq <= 0 {
				return fmt.Errorf("%s: --seq %d: want the positive seq \"segue webhooks dead\" lists", name, seq)
			}
			if strings.TrimSpace(webhook) == "" {
				return fmt.Errorf("%s: --webhook: want the name of a webhook", name)
			}
			cfg, err := loadConfigFor(cmd, path, "not read")
			if err != nil {
				return err
			}
			base, err := adminBase(cfg, name)
			if err != nil {
				return err
			}
			q := url.Values{"webhook": {webhook}}
			if seq > 0 {
				q.Set("seq", strconv.FormatInt(seq, 10))
			}
			status, body, err := adminCall(cmd.Context(), base, http.MethodPost, "/admin/webhooks/replay?"+q.Encode(), name)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("%s: the gateway refused: %s", name, adminRefusal(status, body))
			}
			var r gateway.ReplayResult
			if err := json.Unmarshal(body, &r); err != nil {
				return fmt.Errorf("%s: answer: %w", name, err)
			}
			if seq > 0 && r.Replayed == 0 {
				return fmt.Errorf("%s: no dead event %d for webhook %s", name, seq, webhook)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead %s for webhook %s\n", r.Replayed, plural(r.Replayed, "event", "events"), webhook)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.Flags().StringVar(&webhook, "webhook", "", "the webhook whose dead events to send again (required)")
	cmd.Flags().Int64Var(&seq, "seq", 0, "only the dead event with this seq")
	_ = cmd.MarkFlagRequired("webhook")
	return cmd
}

// oneLine keeps an error on one line of a table, and the terminal safe
// from what a receiver's answer may put in it.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
