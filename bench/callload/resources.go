package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// resources is what a process holds at one moment: the figures a soak
// compares before and after its churn.
type resources struct {
	at         time.Time
	goroutines int // go_goroutines from the admin listener's /metrics
	fds        int // entries of /proc/<pid>/fd
	udp        int // of them, UDP sockets (SIP, RTP and ICE ports)
	// heapInuse is the heap's spans in use (runtime.MemStats.HeapInuse)
	// right after a forced GC: the live objects and the free space of the
	// spans they sit in.
	heapInuse int64
	// heapAlloc is the live objects alone (MemStats.HeapAlloc) at the same
	// moment, heapObjects their number.
	heapAlloc   int64
	heapObjects int64
	rss         int64 // VmRSS
}

// sampleResources reads pid's resources. Each heap profile fetched with
// gc=1 runs a garbage collection first: the first one leaves only what
// sync.Pools keep for one cycle more, the second (written to profile
// unless that is empty) what is live. The heap figures come from a last
// one, in the text format (debug=1), whose runtime.MemStats are read
// right after its collection, before it writes anything. They are not
// taken from /metrics: the encoding of a heap profile allocates one
// record per allocation site the profile ever sampled, and those records,
// its buffers and its compressor, garbage but not yet collected, would
// count in the scraped heap (several MiB at a high sampling rate, more as
// the run samples new sites).
func sampleResources(ctx context.Context, pid int, admin, profile string) (resources, error) {
	r := resources{at: time.Now()}
	if err := heapProfile(ctx, admin, ""); err != nil {
		return r, err
	}
	if profile != "" {
		if err := heapProfile(ctx, admin, profile); err != nil {
			return r, err
		}
	}
	if err := heapStats(ctx, admin, &r); err != nil {
		return r, err
	}
	m, err := scrapeMetrics(ctx, metricsURL(admin))
	if err != nil {
		return r, err
	}
	r.goroutines = int(m["go_goroutines"])
	if r.fds, r.udp, err = procSockets(pid); err != nil {
		return r, err
	}
	r.rss, err = procRSS(pid)
	return r, err
}

// heapProfile fetches /debug/pprof/heap?gc=1 from the admin listener into
// path (or discards it when path is empty).
func heapProfile(ctx context.Context, admin, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := getHeap(ctx, admin, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w := io.Discard
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// heapStats runs a garbage collection in the gateway and sets r's heap
// figures to those right after it, read from the MemStats that
// /debug/pprof/heap?gc=1&debug=1 prints after the profile.
func heapStats(ctx context.Context, admin string, r *resources) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := getHeap(ctx, admin, "&debug=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	ms, err := parseMemStats(resp.Body)
	if err != nil {
		return err
	}
	for name, dst := range map[string]*int64{"HeapAlloc": &r.heapAlloc, "HeapInuse": &r.heapInuse, "HeapObjects": &r.heapObjects} {
		v, ok := ms[name]
		if !ok {
			return fmt.Errorf("heap profile: no %s in its MemStats", name)
		}
		*dst = v
	}
	return nil
}

func getHeap(ctx context.Context, admin, query string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(admin, "/")+"/debug/pprof/heap?gc=1"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("heap profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("heap profile: %s", resp.Status)
	}
	return resp, nil
}

// parseMemStats reads the integer fields of the runtime.MemStats that
// follow a heap profile in the text format, as lines such as
// "# HeapAlloc = 1577328", by name.
func parseMemStats(r io.Reader) (map[string]int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // PauseNs is a long line
	ms := map[string]int64{}
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " = ")
		if !ok || !strings.HasPrefix(name, "# ") {
			continue
		}
		if v, err := strconv.ParseInt(val, 10, 64); err == nil {
			ms[strings.TrimPrefix(name, "# ")] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("heap profile: %w", err)
	}
	return ms, nil
}

// procSockets counts the open file descriptors of pid and, among them,
// the UDP sockets: a descriptor links to socket:[inode], and the UDP
// sockets' inodes are listed in the process's /proc/<pid>/net/udp and
// udp6 (the tables of its network namespace), so no lsof is needed.
func procSockets(pid int) (fds, udp int, err error) {
	dir := fmt.Sprintf("/proc/%d", pid)
	inodes := map[string]bool{}
	for _, t := range []string{"udp", "udp6"} {
		f, err := os.Open(filepath.Join(dir, "net", t))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, 0, err
		}
		err = udpInodes(f, inodes)
		f.Close()
		if err != nil {
			return 0, 0, err
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, "fd", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		fds++
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			udp++
		}
	}
	return fds, udp, nil
}

// udpInodes adds the inode of each socket in a /proc/net/udp table to
// set. The table has a header line, then one socket per line with the
// inode in the tenth column (proc(5)).
func udpInodes(r io.Reader, set map[string]bool) error {
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		if _, err := strconv.ParseUint(f[9], 10, 64); err == nil && f[9] != "0" {
			set[f[9]] = true
		}
	}
	return sc.Err()
}

// margins are how far above the baseline each figure may end.
type margins struct {
	goroutines int
	fds        int
	udp        int
	heap       int64 // heap in use, bytes
	live       int64 // live objects, bytes
	rss        int64 // bytes
}

// excess lists the figures of end that are above base by more than m,
// each as a sentence; none means end is back to its baseline.
func (m margins) excess(base, end resources) []string {
	var out []string
	if d := end.goroutines - base.goroutines; d > m.goroutines {
		out = append(out, fmt.Sprintf("goroutines %d → %d (+%d, margin %d)", base.goroutines, end.goroutines, d, m.goroutines))
	}
	if d := end.fds - base.fds; d > m.fds {
		out = append(out, fmt.Sprintf("file descriptors %d → %d (+%d, margin %d)", base.fds, end.fds, d, m.fds))
	}
	if d := end.udp - base.udp; d > m.udp {
		out = append(out, fmt.Sprintf("UDP sockets %d → %d (+%d, margin %d)", base.udp, end.udp, d, m.udp))
	}
	if d := end.heapInuse - base.heapInuse; d > m.heap {
		out = append(out, fmt.Sprintf("heap in use %s → %s (+%s, margin %s)", mib(base.heapInuse), mib(end.heapInuse), mib(d), mib(m.heap)))
	}
	if d := end.heapAlloc - base.heapAlloc; d > m.live {
		out = append(out, fmt.Sprintf("live objects %s → %s (+%s, margin %s)", mib(base.heapAlloc), mib(end.heapAlloc), mib(d), mib(m.live)))
	}
	if d := end.rss - base.rss; d > m.rss {
		out = append(out, fmt.Sprintf("RSS %s → %s (+%s, margin %s)", mib(base.rss), mib(end.rss), mib(d), mib(m.rss)))
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// String prints the figures on one line.
func (r resources) String() string {
	return fmt.Sprintf("goroutines %d, fds %d (UDP %d), heap in use %s (live objects %s), RSS %s", r.goroutines, r.fds, r.udp, mib(r.heapInuse), mib(r.heapAlloc), mib(r.rss))
}

// growth prints how far r's heap and RSS are above base, in KiB, and how
// many more live objects it holds.
func (r resources) growth(base resources) string {
	kib := func(d int64) string { return fmt.Sprintf("%+.0f KiB", float64(d)/1024) }
	return fmt.Sprintf("heap in use %s, live objects %s (%+d objects), RSS %s", kib(r.heapInuse-base.heapInuse), kib(r.heapAlloc-base.heapAlloc), r.heapObjects-base.heapObjects, kib(r.rss-base.rss))
}

// profileDiff returns the top entries of what is in use in end and not
// in base, by go tool pprof.
func profileDiff(ctx context.Context, base, end string, lines int) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-sample_index=inuse_space", "-diff_base", base, end)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v: %s", err, out)
	}
	ls := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[:lines]
	}
	return strings.Join(ls, "\n"), nil
}
