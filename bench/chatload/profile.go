package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// profiling is what -admin, -cpuprofile and -profile-for ask for: the
// gateway's CPU time over the sending and a CPU profile of it, both from
// the gateway's admin listener (/metrics and /debug/pprof/profile).
type profiling struct {
	admin   string
	profile string
	seconds time.Duration
	// self is -genprofile: a CPU profile of the generator.
	self string
}

func (p *profiling) check() error {
	if p.admin == "" {
		if p.profile != "" {
			return errors.New("-cpuprofile needs -admin")
		}
		return nil
	}
	u, err := url.Parse(p.admin)
	if err != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) {
		return errors.New("-admin must be an http URL on a loopback address")
	}
	p.admin = strings.TrimSuffix(p.admin, "/")
	if p.seconds < time.Second || p.seconds > time.Minute {
		return errors.New("-profile-for must be 1s-60s")
	}
	return nil
}

// gatewayCPU reads process_cpu_seconds_total from the gateway's metrics;
// 0 without -admin.
func (p *profiling) gatewayCPU(ctx context.Context) (time.Duration, error) {
	if p.admin == "" {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("gateway metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("gateway metrics: %s", resp.Status)
	}
	return parseCPUSeconds(resp.Body)
}

// parseCPUSeconds finds process_cpu_seconds_total in a Prometheus text
// page.
func parseCPUSeconds(r io.Reader) (time.Duration, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("gateway metrics: process_cpu_seconds_total %q: %w", v, err)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("gateway metrics: %w", err)
	}
	return 0, errors.New("gateway metrics: no process_cpu_seconds_total")
}

// startProfile asks the gateway for a CPU profile of p.seconds and writes
// it to p.profile; the channel gives the outcome (nil at once without
// -cpuprofile).
func (p *profiling) startProfile(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	if p.profile == "" {
		done <- nil
		return done
	}
	go func() {
		done <- p.fetchProfile(ctx)
	}()
	return done
}

func (p *profiling) fetchProfile(ctx context.Context) error {
	secs := int(p.seconds / time.Second)
	ctx, cancel := context.WithTimeout(ctx, p.seconds+30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.admin, secs), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("gateway profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gateway profile: %s", resp.Status)
	}
	f, err := os.Create(p.profile)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("gateway profile: %w", err)
	}
	return f.Close()
}

// startSelfProfile starts profiling the generator when -genprofile asks
// for it; stop ends the profile and closes its file.
func (p *profiling) startSelfProfile() (stop func() error, err error) {
	if p.self == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(p.self)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
