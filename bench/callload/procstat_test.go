package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis, utime 1234, stime 66.
	line := "4242 (segue (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 66 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 13 * time.Second; got != want {
		t.Errorf("cpu %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) gave no error", bad)
		}
	}
	// Our own process reads back.
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
	if rss, err := procRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("own RSS %d, %v", rss, err)
	}
	// 8 MiB mapped and touched here show in our anonymous memory, which
	// is part of the RSS. They are mapped apart from Go's heap, which may
	// hand out pages that a freed object left resident.
	_, before, err := procMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ballast, err := syscall.Mmap(-1, 0, 8<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(ballast)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	rss, after, err := procMem(os.Getpid())
	if err != nil || after <= 0 || after > rss {
		t.Errorf("own RSS %d with anonymous memory %d, %v", rss, after, err)
	}
	if after-before < 7<<20 {
		t.Errorf("anonymous memory grew by %d B after 8 MiB were touched", after-before)
	}
}

func TestParseMetricLine(t *testing.T) {
	for line, want := range map[string]struct {
		name string
		v    float64
		ok   bool
	}{
		"go_goroutines 57":                           {"go_goroutines", 57, true},
		`segue_calls_total{outcome="ended"} 3`:       {`segue_calls_total{outcome="ended"}`, 3, true},
		`x{a="b c"} 1.5e+03 1700000000`:              {`x{a="b c"}`, 1500, true},
		"# HELP go_goroutines Number of goroutines.": {"", 0, false},
		"":                {"", 0, false},
		"broken":          {"", 0, false},
		"name notanumber": {"", 0, false},
	} {
		name, v, ok := parseMetricLine(line)
		if name != want.name || v != want.v || ok != want.ok {
			t.Errorf("parseMetricLine(%q) = %q %v %v, want %+v", line, name, v, ok, want)
		}
	}
}
