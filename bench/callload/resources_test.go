package main

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
)

func TestUDPInodes(t *testing.T) {
	// A header, two sockets and a malformed line (proc(5), /proc/net/udp).
	table := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
  124: 0100007F:4E20 0100007F:4E22 01 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 0
  125: garbage
`
	set := map[string]bool{}
	if err := udpInodes(strings.NewReader(table), set); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range set {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"4242", "4343"}) {
		t.Errorf("inodes %v, want [4242 4343]", got)
	}
}

// TestProcSocketsCountsOwnUDP opens two UDP sockets and one TCP listener
// in this process: the descriptor count grows by three and the UDP count
// by two.
func TestProcSocketsCountsOwnUDP(t *testing.T) {
	fds0, udp0, err := procSockets(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var closers []func() error
	for range 2 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, c.Close)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, l.Close)
	fds1, udp1, err := procSockets(os.Getpid())
	for _, c := range closers {
		_ = c()
	}
	if err != nil {
		t.Fatal(err)
	}
	if fds1-fds0 != 3 || udp1-udp0 != 2 {
		t.Errorf("descriptors %d → %d, UDP %d → %d; want +3 and +2", fds0, fds1, udp0, udp1)
	}
}

func TestMarginsExcess(t *testing.T) {
	m := margins{goroutines: 5, fds: 2, udp: 0, heap: 8 << 20, live: 2 << 20, rss: 32 << 20}
	base := resources{goroutines: 20, fds: 20, udp: 1, heapInuse: 4 << 20, heapAlloc: 2 << 20, rss: 30 << 20}
	within := resources{goroutines: 25, fds: 22, udp: 1, heapInuse: 12 << 20, heapAlloc: 4 << 20, rss: 62 << 20}
	if got := m.excess(base, within); len(got) != 0 {
		t.Errorf("at the margins: %v, want nothing", got)
	}
	below := resources{goroutines: 10, fds: 10, udp: 0, heapInuse: 1 << 20, heapAlloc: 1 << 20, rss: 10 << 20}
	if got := m.excess(base, below); len(got) != 0 {
		t.Errorf("below the baseline: %v, want nothing", got)
	}
	over := resources{goroutines: 26, fds: 23, udp: 2, heapInuse: 12<<20 + 1, heapAlloc: 4<<20 + 1, rss: 62<<20 + 1}
	got := m.excess(base, over)
	if len(got) != 6 {
		t.Fatalf("one past each margin: %d excesses %v, want 6", len(got), got)
	}
	for i, prefix := range []string{"goroutines 20 → 26", "file descriptors 20 → 23", "UDP sockets 1 → 2", "heap in use 4.0 MiB", "live objects 2.0 MiB", "RSS 30.0 MiB"} {
		if !strings.HasPrefix(got[i], prefix) {
			t.Errorf("excess %d %q, want it to start %q", i, got[i], prefix)
		}
	}
}

// TestParseMemStats reads this process's heap profile in the text format
// with 16 MiB held live and after it was released.
func TestParseMemStats(t *testing.T) {
	read := func() (alloc int64) {
		t.Helper()
		runtime.GC()
		var b bytes.Buffer
		if err := pprof.Lookup("heap").WriteTo(&b, 1); err != nil {
			t.Fatal(err)
		}
		ms, err := parseMemStats(&b)
		if err != nil {
			t.Fatal(err)
		}
		if ms["HeapInuse"] < ms["HeapAlloc"] || ms["HeapObjects"] == 0 {
			t.Errorf("heap in use %d, live heap %d, %d objects", ms["HeapInuse"], ms["HeapAlloc"], ms["HeapObjects"])
		}
		return ms["HeapAlloc"]
	}
	const held = 16 << 20
	big := make([]byte, held)
	withBig := read()
	runtime.KeepAlive(big)
	big = nil
	without := read()
	// The rest of the heap moves by a few KiB between the two readings.
	if withBig < held || withBig-without < held-held/16 {
		t.Errorf("live heap %d with %d bytes held, %d after they were released", withBig, held, without)
	}
}
