package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

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
			for _, w := range configWarnings(path, cfg) {
				fmt.Fprintf(cmd.OutOrStdout(), "warning: %s\n", w)
			}
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
	fmt.Fprintf(w, "  store:  %s %s, files in %s\n", cfg.Store.Driver, cfg.Store.Where(), cfg.Store.FilesDir)
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
SQLite under ./data, the web side on 127.0.0.1:8080, one queue and an agent,
alice, with a freshly generated password that is printed once. It refuses
to overwrite an existing file unless --force is given. The file is
readable by its owner and group only.`,
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
			password, doc, err := initialConfig()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(path, flags, 0o640)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; use --force to overwrite it", path)
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(doc); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s\n", path)
			fmt.Fprintf(w, "agent alice's password: %s\n", password)
			fmt.Fprintln(w, "It is shown only this once; change it with `segue agent passwd`.")
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "segue.yaml", "where to write the file")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

// initialConfig is the example configuration with a new random password
// for its agent in place of the demo one; it returns the password too.
func initialConfig() (password string, doc []byte, err error) {
	// 20 letters and digits: about 119 bits, and nothing a shell or a
	// YAML file would read specially.
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	p := make([]byte, 20)
	for i := range p {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", nil, err
		}
		p[i] = alphabet[n.Int64()]
	}
	password = string(p)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", nil, err
	}
	lines := strings.Split(string(configs.Example), "\n")
	replaced := false
	for i, l := range lines {
		switch {
		case strings.Contains(l, "Demo password"):
			lines[i] = strings.Repeat(" ", len(l)-len(strings.TrimLeft(l, " "))) +
				"# Generated by `segue config init`. Make another with: segue agent passwd"
		case strings.Contains(l, configs.DemoHash):
			lines[i] = strings.Replace(l, configs.DemoHash, string(hash), 1)
			replaced = true
		}
	}
	if !replaced {
		return "", nil, errors.New("config init: the example configuration has no demo password hash to replace")
	}
	return password, []byte(strings.Join(lines, "\n")), nil
}
