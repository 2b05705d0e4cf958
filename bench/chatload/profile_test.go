package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseCPUSeconds(t *testing.T) {
	page := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_max_fds 1024
`
	got, err := parseCPUSeconds(strings.NewReader(page))
	if err != nil || got != 12500*time.Millisecond {
		t.Fatalf("parseCPUSeconds = %v, %v; want 12.5s", got, err)
	}
	if _, err := parseCPUSeconds(strings.NewReader("go_goroutines 10\n")); err == nil {
		t.Fatal("a page without process_cpu_seconds_total: no error")
	}
	if _, err := parseCPUSeconds(strings.NewReader("process_cpu_seconds_total x\n")); err == nil {
		t.Fatal("a bad value: no error")
	}
}

func TestProfilingCheck(t *testing.T) {
	for _, tc := range []struct {
		p  profiling
		ok bool
	}{
		{profiling{}, true},
		{profiling{profile: "x.pprof"}, false},
		{profiling{admin: "http://127.0.0.1:8091", seconds: 3 * time.Second}, true},
		{profiling{admin: "http://10.0.0.1:8091", seconds: 3 * time.Second}, false},
		{profiling{admin: "http://127.0.0.1:8091", seconds: 0}, false},
		{profiling{admin: "ftp://127.0.0.1:8091", seconds: 3 * time.Second}, false},
	} {
		if err := tc.p.check(); (err == nil) != tc.ok {
			t.Errorf("check(%+v) = %v, want ok %v", tc.p, err, tc.ok)
		}
	}
}

func TestMessageID(t *testing.T) {
	for _, tc := range []struct {
		frame, id string
		ok        bool
	}{
		{`{"message":{"id":"c_1-7","conversation_id":"c_1","seq":8},"type":"message"}`, "c_1-7", true},
		{`{"message":{"id":"a\"b"},"type":"message"}`, "", false},
		{`{"type":"message","message":{"id":"x"}}`, "", false},
		{`{"message":{"id":"unterminated`, "", false},
	} {
		id, ok := messageID([]byte(tc.frame))
		if id != tc.id || ok != tc.ok {
			t.Errorf("messageID(%s) = %q %v, want %q %v", tc.frame, id, ok, tc.id, tc.ok)
		}
	}
}
