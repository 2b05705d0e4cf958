//go:build e2e

package test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// noiseY4M writes a w x h camera clip, grey but for a 320x240 patch of
// grain (±20 around mid-grey): at a fine quantizer it takes all the
// bitrate an encoder may use, and at a coarse one it shrinks smoothly, as
// a real picture does, so the sender keeps its frame rate at any bitrate.
func noiseY4M(t *testing.T, w, h, frames int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "noise.y4m")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "YUV4MPEG2 W%d H%d F15:1 Ip A1:1 C420jpeg\n", w, h)
	r := rand.New(rand.NewPCG(1, 2))
	frame := make([]byte, w*h*3/2)
	for range frames {
		for i := range frame {
			frame[i] = 128
		}
		for y := range 240 {
			for x := range 320 {
				frame[(h/2-120+y)*w+w/2-160+x] = byte(108 + r.IntN(41))
			}
		}
		bw.WriteString("FRAME\n")
		bw.Write(frame)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// inNetNS runs the test named name again, in a network namespace of its
// own, so that it can shape its traffic
// with tc without touching the machine's. It reports whether the caller
// is that inner run and should go on with the test.
func inNetNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv("SEGUE_NETNS_TEST") == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test shapes links with tc in a network namespace of its own, which needs root (make test runs as root)")
	}
	for _, tool := range []string{"unshare", "ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (util-linux, iproute2): %v", tool, err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair with an address makes Chromium see a network (with
	// loopback alone it thinks it is offline); every packet between the
	// namespace's own addresses still goes through lo.
	const setup = `ip link set lo up && ip link add segue0 type veth peer name segue1 &&
ip addr add 10.99.0.1/24 dev segue0 && ip link set segue0 up && ip link set segue1 up && exec "$@"`
	args := []string{"--net", "--", "sh", "-c", setup, "sh",
		exe, "-test.run", "^" + t.Name() + "$", "-test.count", "1", "-test.v"}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "SEGUE_NETNS_TEST="+t.Name(), "SEGUE_E2E_BIN="+segueBin)
	out, err := cmd.CombinedOutput()
	t.Logf("in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return false
}

// shape limits, on loopback, the UDP packets to (dport) or from (sport)
// the ports to kbit kbit/s in all, over IPv4 and IPv6, with a 50-packet
// queue, until the returned function is called or the test ends.
func shape(t *testing.T, dir string, ports []int, kbit int) (unshape func()) {
	t.Helper()
	tc := func(args ...string) error {
		out, err := exec.Command("tc", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tc %v: %v: %s", args, err, out)
		}
		return nil
	}
	if len(ports) == 0 {
		t.Fatal("no port to shape")
	}
	t.Logf("shaping UDP %s %v to %d kbit/s", dir, ports, kbit)
	rate := strconv.Itoa(kbit) + "kbit"
	cmds := [][]string{
		// Unclassified traffic goes through unshaped.
		{"qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"},
		{"class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", rate, "ceil", rate, "burst", "4k"},
		{"qdisc", "add", "dev", "lo", "parent", "1:20", "handle", "20:", "pfifo", "limit", "50"},
	}
	for _, port := range ports {
		p := strconv.Itoa(port)
		cmds = append(cmds,
			[]string{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
				"match", "ip", "protocol", "17", "0xff", "match", "ip", dir, p, "0xffff", "flowid", "1:20"},
			[]string{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ipv6", "prio", "2", "u32",
				"match", "ip6", "protocol", "17", "0xff", "match", "ip6", dir, p, "0xffff", "flowid", "1:20"})
	}
	for _, args := range cmds {
		if err := tc(args...); err != nil {
			t.Fatal(err)
		}
	}
	done := false
	unshape = func() {
		if done {
			return
		}
		done = true
		if err := tc("qdisc", "del", "dev", "lo", "root"); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(unshape)
	return unshape
}

// The page-side measures: the UDP ports of every local candidate of the
// page's connected peer connections (all of them: the browser may move to
// another candidate pair at any time), and the video bitrate sent or
// received over a window.
const (
	jsLocalPorts = `const ports = new Set();
for (const pc of window.__pcs) {
  if (pc.connectionState !== 'connected') continue;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'local-candidate' && s.protocol === 'udp' && s.port) ports.add(s.port);
  });
}
return [...ports];`
	jsVideoKbps = `const sum = async () => {
  let b = 0, frames = 0;
  for (const pc of window.__pcs) {
    if (pc.connectionState !== 'connected') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type !== type || s.kind !== 'video') return;
      b += s.bytesSent ?? s.bytesReceived ?? 0;
      frames += s.framesDecoded ?? s.framesEncoded ?? 0;
    });
  }
  return {b, frames};
};
const a = await sum(), t0 = performance.now();
await new Promise((r) => setTimeout(r, ms));
const z = await sum();
return {kbps: Math.round((z.b - a.b) * 8 / (performance.now() - t0)), frames: z.frames - a.frames};`
)

type rate struct {
	Kbps   int `json:"kbps"`
	Frames int `json:"frames"`
}

// videoRate measures the video bitrate b sends or receives (type
// "outbound-rtp" or "inbound-rtp") over two seconds.
func videoRate(tb *tab, typ string) rate {
	tb.t.Helper()
	return call[rate](tb, asyncFn("type, ms", jsVideoKbps), typ, 2000)
}

// waitRate measures until cond holds for two windows in a row, or fails
// after a minute; it returns the last measure.
func waitRate(t *testing.T, tb *tab, typ, what string, cond func(rate) bool) rate {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	held := 0
	for {
		r := videoRate(tb, typ)
		t.Logf("%s %s: %d kbit/s, %d frames in 2 s", tb.name, typ, r.Kbps, r.Frames)
		if cond(r) {
			held++
			if held == 2 {
				return r
			}
		} else {
			held = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never held (last %d kbit/s, %d frames)", tb.name, what, r.Kbps, r.Frames)
		}
	}
}

// TestVideoOnThinLinks squeezes, in turn, the console's downlink and the
// customer's uplink to 500 kbit/s while the customer's camera sends noise
// (which takes all the bitrate it may). Each time the customer's browser
// must lower its bitrate to fit, and the console keep decoding frames.
// The downlink is the gateway's doing: it estimates each viewer's
// bandwidth and caps the sender with REMB.
func TestVideoOnThinLinks(t *testing.T) {
	if !inNetNS(t) {
		return
	}
	const link = 500 // kbit/s
	g := startGateway(t)
	customer := ownTab(t, "customer", chromedp.Flag("use-file-for-fake-video-capture", noiseY4M(t, 640, 480, 30)))
	agent := ownTab(t, "console")
	chatBetween(t, g, customer, agent, "My line is slow")

	customer.click("video-start")
	agent.waitPlaying("remote-video", 0, 0)
	waitRate(t, customer, "outbound-rtp", "sending well over the link's rate on an open path",
		func(r rate) bool { return r.Kbps > 2*link })

	unshape := shape(t, "dport", call[[]int](agent, asyncFn("", jsLocalPorts)), link)
	waitRate(t, customer, "outbound-rtp", "sending within the console's downlink",
		func(r rate) bool { return r.Kbps <= link*11/10 })
	waitRate(t, agent, "inbound-rtp", "frames decoded at the console over the thin downlink",
		func(r rate) bool { return r.Frames > 0 })
	unshape()
	waitRate(t, customer, "outbound-rtp", "the bitrate rising with the downlink restored",
		func(r rate) bool { return r.Kbps > 2*link })

	shape(t, "sport", call[[]int](customer, asyncFn("", jsLocalPorts)), link)
	waitRate(t, agent, "inbound-rtp", "receiving within the customer's uplink, frames decoded",
		func(r rate) bool { return r.Kbps <= link*11/10 && r.Frames > 0 })
}
