package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segue-rtc/segue/gateway"
)

func newAPIKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apikey",
		Short: "API keys for integrations (integrations.api_keys)",
	}
	var scopes []string
	var expires string
	newKey := &cobra.Command{
		Use:   "new NAME",
		Short: "Make an API key and print it once, with the config entry to paste",
		Long: `Make a random API key for the integration NAME. The key is printed once,
on standard output, and stored nowhere: give it to the integration. The
config keeps only its SHA-256, in the integrations.api_keys entry printed
on standard error.`,
		Example: "  segue apikey new crm --scopes conversations:read,conversations:write\n" +
			"  segue apikey new archive --scopes conversations:read,recordings:read --expires 2027-01-01T00:00:00Z",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if len(scopes) == 0 {
				return fmt.Errorf("--scopes: at least one of %s", strings.Join(gateway.Scopes, ", "))
			}
			for _, s := range scopes {
				if !slices.Contains(gateway.Scopes, s) {
					return fmt.Errorf("--scopes: %q is not one of %s", s, strings.Join(gateway.Scopes, ", "))
				}
			}
			entry := gateway.APIKeyConfig{Name: name, Scopes: scopes}
			if expires != "" {
				t, err := time.Parse(time.RFC3339, expires)
				if err != nil {
					return fmt.Errorf("--expires: %q is not an RFC 3339 time such as 2027-01-01T00:00:00Z", expires)
				}
				entry.Expires = t
			}
			var b [32]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			key := gateway.APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
			entry.KeyHash = gateway.HashAPIKey(key)
			// The entry is checked as the gateway will check it.
			cfg := gateway.IntegrationsConfig{APIKeys: []gateway.APIKeyConfig{entry}}
			if err := gateway.ValidateIntegrations(cfg); err != nil {
				return err
			}
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), key); err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "\nThe key above is shown only this once. Add this entry under integrations.api_keys:\n\n")
			fmt.Fprintf(errw, "    - name: %s\n      key_hash: %q\n      scopes: [%s]\n", name, entry.KeyHash, strings.Join(scopes, ", "))
			if !entry.Expires.IsZero() {
				fmt.Fprintf(errw, "      expires: %s\n", entry.Expires.Format(time.RFC3339))
			}
			return nil
		},
	}
	newKey.Flags().StringSliceVar(&scopes, "scopes", nil, "what the key may do: "+strings.Join(gateway.Scopes, ", "))
	newKey.Flags().StringVar(&expires, "expires", "", "when the key stops working (RFC 3339), if ever")
	cmd.AddCommand(newKey)
	return cmd
}
