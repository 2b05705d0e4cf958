// Package pgtest runs a private PostgreSQL server for tests: initdb into
// a temporary directory, then the server on a free loopback port with its
// unix socket in that directory, so that it touches nothing of the
// machine's own clusters. It uses the Debian postgresql package's
// binaries (/usr/lib/postgresql/<version>/bin); when the tests run as
// root, the server runs as the postgres user, since initdb refuses root.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned by Start when no PostgreSQL server binaries
// are installed.
var ErrNoPostgres = errors.New("pgtest: no PostgreSQL binaries (install the postgresql package)")

// Server is a running private PostgreSQL server. Its superuser is
// "postgres", trusted without a password on loopback.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds the data directory, the socket and the server log.
	Dir string

	bin      string
	runAs    string // OS user running the server; "" for the current one
	settings []string
	dbs      atomic.Int64
}

// Option changes how Start sets the server up.
type Option func(*Server)

// Setting sets a server parameter (postgres -c name=value).
func Setting(name, value string) Option {
	return func(s *Server) { s.settings = append(s.settings, name+"="+value) }
}

// Start creates and starts a server. By default fsync is off: the data
// survives the server process being killed (the tests' crash), not the
// machine losing power, and tests run faster.
func Start(opts ...Option) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, settings: []string{"fsync=off", "full_page_writes=off"}}
	for _, o := range opts {
		o(s)
	}
	if os.Geteuid() == 0 {
		s.runAs = "postgres"
	}
	if s.Dir, err = os.MkdirTemp("", "segue-pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if s.runAs != "" {
		u, err := user.Lookup(s.runAs)
		if err != nil {
			s.remove()
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			s.remove()
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	if out, err := s.run("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-sync"); err != nil {
		s.remove()
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// A free port can be taken between the probe and the server's bind:
	// try a few.
	for range 3 {
		if s.Port, err = freePort(); err != nil {
			break
		}
		if err = s.StartAgain(); err == nil {
			return s, nil
		}
	}
	s.remove()
	return nil, err
}

// binDir finds the newest installed server version's binaries.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return va - vb
	})
	if len(dirs) > 0 {
		return filepath.Dir(dirs[len(dirs)-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoPostgres
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

// run runs one of the server's programs as the server's user.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.Dir
	return cmd.CombinedOutput()
}

// StartAgain starts the server on its data directory and port, after
// Start or Kill, and returns once it accepts connections.
func (s *Server) StartAgain() error {
	opts := []string{"-p", strconv.Itoa(s.Port), "-k", s.Dir, "-c", "listen_addresses=127.0.0.1"}
	for _, kv := range s.settings {
		opts = append(opts, "-c", kv)
	}
	out, err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.data(), "-l", filepath.Join(s.Dir, "server.log"),
		"-o", strings.Join(opts, " "))
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, tail(log, 2000))
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Kill stops the server at once, as a crash would (pg_ctl stop -m
// immediate): no checkpoint, the next start replays the WAL.
func (s *Server) Kill() error {
	if out, err := s.run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", s.data()); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() error {
	out, err := s.run("pg_ctl", "stop", "-m", "fast", "-w", "-D", s.data())
	s.remove()
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

func (s *Server) remove() { os.RemoveAll(s.Dir) }

// DSN is the connection string of database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates an empty database with a name of its own and
// returns its DSN.
func (s *Server) NewDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("segue_%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return s.DSN(name), nil
}
