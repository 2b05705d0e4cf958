package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/store"
)

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Erase a customer's data or export a conversation",
		Long: `Work on the stored data directly, through the store named in the
configuration file (store.dsn and store.files_dir): the gateway may be
running meanwhile (SQLite in WAL mode lets both write), or not. Run it as
the user the gateway runs as, on the machine that holds the store.`,
	}
	cmd.AddCommand(newDataEraseCmd(), newDataExportCmd())
	return cmd
}

func newDataEraseCmd() *cobra.Command {
	var path, customerID, email string
	cmd := &cobra.Command{
		Use:   "erase",
		Short: "Erase a customer's conversations, files, recordings and call records",
		Long: `Erase every closed conversation of a customer, found by the customer id
their identity token carried (--customer-id) or the e-mail address they
gave (--email, any case), with its messages, files, call recordings and
call records: rows and files on disk. It prints what it erased. A
conversation still open is left alone and listed: end it, then erase again.`,
		Example: "  segue data erase --customer-id crm-4711\n  segue data erase --email ann@example.com",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if customerID == "" && email == "" {
				return errors.New("data erase: give --customer-id or --email")
			}
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			st, err := store.Open(cmd.Context(), cfg.Store)
			if err != nil {
				return err
			}
			d, err := st.EraseCustomer(cmd.Context(), customerID, email)
			err = errors.Join(err, st.Close())
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "erased %d conversations, %d messages, %d files, %d recordings, %d call records\n",
				d.Conversations, d.Messages, d.Files, d.Recordings, d.Calls)
			for _, id := range d.ConversationIDs {
				fmt.Fprintf(w, "  erased %s\n", id)
			}
			if len(d.Open) > 0 {
				fmt.Fprintf(w, "kept %d open conversations (end them, then erase again): %s\n", len(d.Open), strings.Join(d.Open, ", "))
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.Flags().StringVar(&customerID, "customer-id", "", "the customer's id (from the identity token)")
	cmd.Flags().StringVar(&email, "email", "", "the customer's e-mail address")
	return cmd
}

func newDataExportCmd() *cobra.Command {
	var path, id, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a conversation's transcript, files and recordings",
		Long: `Write a conversation into DIR/<id>/: transcript.json (every message, call
and recording), transcript.html (the same, readable in a browser, every
text escaped), the files under files/ and the call recordings under
recordings/.`,
		Example: "  segue data export --conversation c_0123 --out exports/",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" || out == "" {
				return errors.New("data export: give --conversation and --out")
			}
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			st, err := store.Open(cmd.Context(), cfg.Store)
			if err != nil {
				return err
			}
			ex, err := gateway.ExportConversation(cmd.Context(), st, id, out)
			if err := errors.Join(err, st.Close()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s: %d messages, %d files, %d recordings\n", ex.Dir, ex.Messages, ex.Files, ex.Recordings)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.Flags().StringVar(&id, "conversation", "", "the conversation's id")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the export into")
	return cmd
}
