//go:build e2e

// Package chrome is what the end-to-end tests share to drive Debian's
// Chromium with chromedp: the flags (fake camera and microphone, loopback
// ICE, no background networking), a page log that fails a test on an
// uncaught exception, and the Content-Security-Policy probe.
package chrome

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Path is Debian's Chromium.
const Path = "/usr/bin/chromium"

// Options are the allocator options for a headless Chromium with its
// profile in profileDir, followed by extra. A missing browser fails t.
func Options(t testing.TB, profileDir string, extra ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Fatalf("chromium is required for the e2e tests: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profileDir),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// One disable-features in all: the last one set wins.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
	)
	return append(opts, extra...)
}

// Probe records the page's Content-Security-Policy violations in
// window.__csp, the RTCPeerConnections it makes in window.__pcs (for
// tests to read their getStats) and the WebSockets it opens in
// window.__sockets. While window.__wsDown is set, new WebSockets fail as
// they do without a network, for tests that keep a page's socket away;
// the media path (UDP) is left alone, as a socket that drops on its own
// (a proxy, a blip) leaves it.
const Probe = `window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
window.__pcs = [];
window.RTCPeerConnection = class extends window.RTCPeerConnection {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
window.__sockets = [];
window.__wsDown = false;
window.WebSocket = class extends window.WebSocket {
  constructor(...args) {
    if (window.__wsDown) throw new DOMException('the network is down (test)', 'NetworkError');
    super(...args);
    window.__sockets.push(this);
  }
};`

// Log keeps a page's console messages and exceptions.
type Log struct {
	mu    sync.Mutex
	lines []string
}

// Listen is a chromedp listener (chromedp.WithListener) that records
// console calls and uncaught exceptions.
func (l *Log) Listen(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			line += " " + ev.ExceptionDetails.Exception.Description
		}
	default:
		return
	}
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// Check fails t for an uncaught exception in the page, a bug even when
// the test passed, and prints the whole log when t has failed.
func (l *Log) Check(t testing.TB, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.HasPrefix(line, "exception: ") {
			t.Errorf("%s: uncaught %s", name, line)
		}
	}
	if t.Failed() {
		for _, line := range l.lines {
			t.Logf("%s: %s", name, line)
		}
	}
}

// Call is JavaScript that calls fn (a function expression) with args,
// each encoded as JSON.
func Call(fn string, args ...any) string {
	enc := make([]string, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			panic(err) // the tests pass plain values
		}
		enc[i] = string(b)
	}
	return fmt.Sprintf("(%s)(%s)", fn, strings.Join(enc, ", "))
}

// FirstLine is the first line of s, to name a script in a failure.
func FirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Open runs the first action on ctx, which opens the tab (or starts the
// browser) and installs the Probe. ctx must have no timeout:
// cancelling it would close the tab.
func Open(ctx context.Context) error {
	_, err := chromedp.Run(ctx, func(ctx context.Context, tgt *chromedp.Target) (page.AddScriptToEvaluateOnNewDocumentResult, error) {
		return cdp.Call(ctx, tgt, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: Probe})
	})
	return err
}
