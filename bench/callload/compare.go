package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// compare runs every variant one after the other, with the same traffic
// on the same cores, and prints each report and then the table.
func (e *runEnv) compare(ctx context.Context, w io.Writer) ([]*report, error) {
	libopus := e.o.segueBin + "-libopus"
	if err := e.ensureBin(ctx, e.o.segueBin, "", e.o.build); err != nil {
		return nil, err
	}
	if err := e.ensureBin(ctx, libopus, "libopus nolibopusfile", e.o.build); err != nil {
		return nil, err
	}
	var reports []*report
	for _, v := range []struct {
		label, bin string
		pcmu       bool
	}{
		{"segue (gopus)", e.o.segueBin, false},
		{"segue (libopus)", libopus, false},
		{"segue (G.711 from the browser)", e.o.segueBin, true},
	} {
		r, err := e.segue(ctx, v.label, v.bin, v.pcmu)
		if err != nil {
			return reports, err
		}
		r.print(w)
		fmt.Fprintln(w)
		reports = append(reports, r)
	}
	rtp, err := e.rtpengine(ctx)
	if err != nil {
		return reports, err
	}
	rtp.print(w)
	fmt.Fprintln(w)
	reports = append(reports, rtp)
	floor, err := codecFloor(ctx, e.targetCPU, e.o.floorTime)
	if err != nil {
		fmt.Fprintf(w, "codec floor: %v\n", err)
	}
	printTable(w, reports, floor, rtp)
	return reports, nil
}

// benchLine matches the time per operation of BenchmarkStages/gopus/call.
var benchLine = regexp.MustCompile(`BenchmarkStages/gopus/call(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// codecFloor runs BenchmarkStages/gopus/call (both directions of one call,
// codec work only, per 20 ms) three times on cpu and returns the least
// disturbed run as a share of one core per call.
func codecFloor(ctx context.Context, cpu int, benchtime string) (float64, error) {
	argv := pinned(cpu, "go", "test", "-run", "^$", "-bench", "^BenchmarkStages$/^gopus$/^call$", "-benchtime", benchtime, "-count", "3", "./transcode/")
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = moduleRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	best := 0.0
	for _, m := range benchLine.FindAllStringSubmatch(string(out), -1) {
		ns, err := strconv.ParseFloat(m[1], 64)
		if err == nil && (best == 0 || ns < best) {
			best = ns
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("no result in:\n%s", out)
	}
	return best / float64(frameDur/time.Nanosecond), nil
}

// printTable writes the side-by-side table: calls held with < 1 % bad
// frames, CPU per call and its ratios to the codec floor and rtpengine.
func printTable(w io.Writer, reports []*report, floor float64, rtp *report) {
	fmt.Fprintf(w, "| target | calls up | refused busy (retry_after) | held < 1 %% bad frames | median bad frames | round trip p50 / p99 | CPU per call (%% of a core) | × codec floor | × rtpengine | RSS per call | of it anonymous |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	rtpCPU := 0.0
	if rtp != nil {
		rtpCPU = rtp.cpuPerCall()
	}
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, r := range reports {
		rss, anon := "n/a", "n/a"
		if r.rssLoaded > 0 && r.established > 0 {
			rss = fmt.Sprintf("%.2f MB", r.rssPerCall())
			anon = fmt.Sprintf("%.2f MB", r.anonPerCall())
		}
		refused := fmt.Sprint(r.refused)
		if r.refused > 0 {
			refused += fmt.Sprintf(" (%s s)", intRange(r.retryAfter))
		}
		fmt.Fprintf(w, "| %s | %d/%d | %s | %d | %.2f %% | %s / %s | %.2f | %s | %s | %s | %s |\n", r.label, r.established, r.attempted, refused, r.heldUnder(0.01),
			100*median(r.bad), ms(percentile(r.rtts, 0.5)), ms(percentile(r.rtts, 0.99)), 100*r.cpuPerCall(), ratio(r.cpuPerCall(), floor), ratio(r.cpuPerCall(), rtpCPU), rss, anon)
	}
	if floor > 0 {
		fmt.Fprintf(w, "| codec floor (BenchmarkStages/gopus/call) | | | | | | %.2f | 1.00 | %s | | |\n", 100*floor, ratio(floor, rtpCPU))
	}
}
