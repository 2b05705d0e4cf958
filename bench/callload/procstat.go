package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the CPU time process pid has used, user plus system
// (utime and stime, fields 14 and 15 of /proc/<pid>/stat, proc(5)).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses: fields are
// counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("callload: /proc stat without a command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("callload: /proc stat with %d fields", len(f)+2)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("callload: /proc stat: bad utime or stime")
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// procRSS returns the resident set size of process pid in bytes (VmRSS in
// /proc/<pid>/status).
func procRSS(pid int) (int64, error) {
	rss, _, err := procMem(pid)
	return rss, err
}

// procMem returns the resident set size of process pid and the part of
// it that is anonymous memory (RssAnon: heap, stacks, the runtime's and
// the C library's allocations), in bytes. The rest is file pages, above
// all the binary's code, paged in the first time it runs and shared:
// a figure per call from RssAnon leaves out the code the first calls
// page in.
func procMem(pid int) (rss, anon int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	kb := func(v string) (int64, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return n << 10, err
	}
	var haveRSS, haveAnon bool
	sc := bufio.NewScanner(f)
	for sc.Scan() && !(haveRSS && haveAnon) {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			if rss, err = kb(v); err != nil {
				return 0, 0, err
			}
			haveRSS = true
		} else if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			if anon, err = kb(v); err != nil {
				return 0, 0, err
			}
			haveAnon = true
		}
	}
	if !haveRSS || !haveAnon {
		return 0, 0, fmt.Errorf("callload: no VmRSS or RssAnon for pid %d", pid)
	}
	return rss, anon, nil
}

// scrapeMetrics fetches a Prometheus text page and returns the value of
// each sample line (name with labels as written → value); comments are
// skipped.
func scrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := parseMetricLine(sc.Text())
		if ok {
			out[name] = val
		}
	}
	return out, sc.Err()
}

// parseMetricLine splits one line of the Prometheus text format into the
// series (name and labels) and its value.
func parseMetricLine(line string) (string, float64, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", 0, false
	}
	i := strings.LastIndexByte(line, '}')
	if i < 0 {
		i = strings.IndexByte(line, ' ') - 1
		if i < 0 {
			return "", 0, false
		}
	}
	name := line[:i+1]
	rest := strings.Fields(line[i+1:])
	if len(rest) == 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(rest[0], 64)
	if err != nil {
		return "", 0, false
	}
	return name, v, true
}

// procSample is one reading of a process's counters.
type procSample struct {
	at   time.Time
	cpu  time.Duration
	rss  int64
	anon int64 // of rss, anonymous memory
}

func sampleProc(pid int) (procSample, error) {
	cpu, err := procCPU(pid)
	if err != nil {
		return procSample{}, err
	}
	rss, anon, err := procMem(pid)
	return procSample{at: time.Now(), cpu: cpu, rss: rss, anon: anon}, err
}

// cpuShare is the share of one core the process used between a and b.
func cpuShare(a, b procSample) float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 {
		return 0
	}
	return float64(b.cpu-a.cpu) / float64(wall)
}
