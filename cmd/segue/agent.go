package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Agent account tools",
	}
	var cost int
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Hash a password for agents[].password_hash",
		Long: `Read a password and print its bcrypt hash, to paste into an agent's
password_hash. On a terminal it prompts twice without echo; otherwise it
reads the first line of standard input.`,
		Example: "  segue agent passwd\n  echo 's3cret-pass' | segue agent passwd",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd)
			if err != nil {
				return err
			}
			if len(pw) < 8 {
				return errors.New("password too short (at least 8 characters)")
			}
			if len(pw) > 72 {
				return errors.New("password too long (bcrypt takes at most 72 bytes)")
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(h))
			return err
		},
	}
	passwd.Flags().IntVar(&cost, "cost", bcrypt.DefaultCost, "bcrypt cost (10-14)")
	cmd.AddCommand(passwd)
	return cmd
}

func readPassword(cmd *cobra.Command) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		errw := cmd.ErrOrStderr()
		fmt.Fprint(errw, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(errw)
		if err != nil {
			return "", err
		}
		fmt.Fprint(errw, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(errw)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
