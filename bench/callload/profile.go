package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// profileRun is a CPU profile of the target being taken over the steady
// window; wait writes it and then the heap profile.
type profileRun struct {
	dir, admin string
	done       chan error
}

// startProfile starts the target's CPU profile for the hold time (whole
// seconds, at least one) when s asks for profiles; it returns nil
// otherwise.
func (s scenario) startProfile(ctx context.Context) *profileRun {
	if s.profileDir == "" || s.metricsURL == "" {
		return nil
	}
	p := &profileRun{dir: s.profileDir, admin: strings.TrimSuffix(s.metricsURL, "/metrics"), done: make(chan error, 1)}
	secs := max(1, int(s.hold/time.Second))
	go func() {
		p.done <- fetchTo(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.admin, secs), filepath.Join(p.dir, "cpu.pprof"), time.Duration(secs+30)*time.Second)
	}()
	return p
}

// wait waits for the CPU profile and then takes the heap profile (after a
// collection, so that it shows what is live with every call up) and the
// goroutines, counted by where they were started (goroutines.txt).
func (p *profileRun) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	err := <-p.done
	return errors.Join(err,
		fetchTo(ctx, p.admin+"/debug/pprof/heap?gc=1", filepath.Join(p.dir, "heap.pprof"), 30*time.Second),
		fetchTo(ctx, p.admin+"/debug/pprof/goroutine?debug=1", filepath.Join(p.dir, "goroutines.txt"), 30*time.Second))
}

// fetchTo writes the body of url to path.
func fetchTo(ctx context.Context, url, path string, timeout time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
