//go:build e2e

package test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// The voice tests use a second Chromium whose fake microphone plays a
// 1 kHz tone from a WAV file (a process-wide switch, so it cannot be the
// shared browser of the chat tests). It is started once and reused.
var (
	voiceMicHz    = 1000.0
	voiceMicAmpl  = 0.5
	voiceBrowsers = &lazyBrowser{prefix: "segue-voice-chromium-", setup: func(t *testing.T, dir string) []chromedp.ExecAllocatorOption {
		return []chromedp.ExecAllocatorOption{fakeMic(t, dir, voiceMicHz, voiceMicAmpl)}
	}}
)

func voiceBrowser(t *testing.T) context.Context {
	t.Helper()
	return voiceBrowsers.get(t)
}

// stopVoiceBrowser ends the voice tests' browser, if one was started.
func stopVoiceBrowser() { voiceBrowsers.close() }

// newVoiceTab opens a tab of the voice browser in its own browser context.
func newVoiceTab(t *testing.T, name string) *tab {
	t.Helper()
	return openTab(t, voiceBrowser(t), name)
}

// hostSite is a customer's website on its own origin that embeds the
// widget with the settings tests need on the script tag.
type hostSite struct {
	srv *httptest.Server
	gw  string // the gateway's URL, set once it runs
}

func newHostSite(t *testing.T) *hostSite {
	t.Helper()
	hs := &hostSite{}
	hs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		attrs := fmt.Sprintf(` data-queue=%q data-audio-processing="off"`, q.Get("queue"))
		if p := q.Get("policy"); p != "" {
			attrs += fmt.Sprintf(` data-ice-transport-policy=%q`, p)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title></head>
<body><h1>A shop</h1>
<script src="%s/widget.js" type="module"%s></script>
</body></html>`, hs.gw, attrs)
	}))
	t.Cleanup(hs.srv.Close)
	return hs
}

// startGateway starts a gateway with vc's trunks and queues that allows
// the site's origin, and points the site's widget at it.
func (hs *hostSite) startGateway(t *testing.T, vc voiceConfig, opts ...func(*gatewayOptions)) *gateway {
	t.Helper()
	vc.origins = append(vc.origins, hs.srv.URL)
	g := startVoiceGateway(t, vc, opts...)
	hs.gw = g.URL
	return g
}

// openShopWidget opens the host site's page in the voice browser, opens
// the chat panel, and starts a conversation with a first message.
func openShopWidget(t *testing.T, hs *hostSite, name, queue, policy, first string, before ...chromedp.Action[chromedp.Void]) (*tab, string) {
	t.Helper()
	tb := newVoiceTab(t, name)
	if len(before) > 0 {
		tb.do(before...)
	}
	u := hs.srv.URL + "/?queue=" + queue
	if policy != "" {
		u += "&policy=" + policy
	}
	tb.do(chromedp.Navigate(u))
	tb.click("widget-open")
	waitJS[bool](tb, "the chat panel", fn("", `const p = q('chat-panel'); return !!p && !p.hidden;`))
	tb.fill("customer-name", "Ann Lee")
	tb.send(first)
	tb.waitMessage(first)
	waitJS[bool](tb, "the mic button", fn("", `const b = q('voice-start'); return !!b && !b.hidden && !b.disabled;`))
	return tb, tb.widgetConversation()
}

// shopChat opens the host site's widget (openShopWidget), where Ann
// writes first, and has Alice accept the conversation in a console of the
// voice browser; it waits until the widget shows that she is helping.
func shopChat(t *testing.T, hs *hostSite, g *gateway, policy, first string) (customer, agent *tab, convID string) {
	t.Helper()
	customer, convID = openShopWidget(t, hs, "customer", "support", policy, first)
	agent = openVoiceConsole(t, g)
	agent.acceptConversation(convID)
	customer.waitText("agent-name", "helping")
	return customer, agent, convID
}

// openVoiceConsole logs Alice in, in the voice browser.
func openVoiceConsole(t *testing.T, g *gateway) *tab {
	t.Helper()
	tb := newVoiceTab(t, "console alice")
	tb.logIn(g, "alice", "/console")
	return tb
}

// widgetCall is the call part of the widget's status line.
type widgetCall struct {
	State   string `json:"state"`
	Text    string `json:"text"`
	EndedBy string `json:"endedBy"`
}

func (tb *tab) callStatus() widgetCall {
	tb.t.Helper()
	return call[widgetCall](tb, fn("", `const s = q('call-status');
return {state: s.dataset.callState ?? '', text: s.textContent, endedBy: s.dataset.endedBy ?? ''};`))
}

// waitCall waits until the widget's call is in state (data-call-state) and
// returns what the status line says.
func (tb *tab) waitCall(state string) widgetCall {
	tb.t.Helper()
	waitJS[bool](tb, "call state "+state, fn("st", `return q('call-status')?.dataset.callState === st;`), state)
	return tb.callStatus()
}

// measureHeard measures for ms, with hearJS, the widget's remote audio,
// which its audio element plays: the strongest frequency and the level in
// dBFS (a full-scale sine is 0 dB).
func (tb *tab) measureHeard(ms int) heard {
	tb.t.Helper()
	h := call[heard](tb, asyncFn("ms", `const a = q('remote-audio');
if (!a?.srcObject?.getAudioTracks().length) return {err: 'no remote stream'};
if (a.paused) await a.play();
return await (`+hearJS+`)(a.srcObject, ms);`), ms)
	if h.Err != "" {
		tb.t.Fatalf("%s: measure audio: %s", tb.name, h.Err)
	}
	return h
}

// expectHeard checks a measurement against a tone.
func expectHeard(t *testing.T, who string, h heard, hz, minDB, maxDB float64) {
	t.Helper()
	t.Logf("%s heard %.0f Hz at %.1f dBFS (analysed at %.0f Hz)", who, h.Freq, h.DB, h.Rate)
	// One FFT bin is rate/8192, about 5.4 Hz.
	if math.Abs(h.Freq-hz) > 12 {
		t.Errorf("%s heard a peak at %.0f Hz (%.1f dBFS), want %.0f Hz", who, h.Freq, h.DB, hz)
	}
	if h.DB < minDB || h.DB > maxDB {
		t.Errorf("%s heard %.1f dBFS at %.0f Hz, want between %.0f and %.0f", who, h.DB, h.Freq, minDB, maxDB)
	}
}

// recording waits for baresip's recording of what it heard and returns
// the part from skip to skip+d.
func baresipHeard(t *testing.T, files func() ([]string, []string), skip, d time.Duration) ([]int16, int) {
	t.Helper()
	var rec string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && rec == "" {
		h, _ := files()
		for _, f := range h {
			if fi, err := os.Stat(f); err == nil && fi.Size() > 16000 {
				rec = f
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec == "" {
		t.Fatal("no recording from baresip")
	}
	time.Sleep(300 * time.Millisecond) // sndfile closes the file at hang-up
	pcm, rate, err := audiotest.ReadWAVFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	a, b := audiotest.Samples(rate, skip), audiotest.Samples(rate, skip+d)
	if len(pcm) < b {
		t.Fatalf("baresip recorded %v, want more than %v", time.Duration(len(pcm))*time.Second/time.Duration(rate), skip+d)
	}
	return pcm[a:b], rate
}
