package gateway

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/webrtc"
)

// exportedSeries returns the name of every series a gateway with SIP and
// WebRTC registers, from its registry's descriptions.
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	eng, err := webrtc.New(webrtc.Config{}, slog.New(slog.DiscardHandler), webrtc.WithLoopbackOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	sc := sip.Config{Listen: []string{"udp:127.0.0.1:0"}}
	sc.ApplyDefaults()
	tr := sip.TrunkConfig{Name: "pbx", URI: "sip:pbx.example.com"}
	tr.ApplyDefaults()
	phones, err := sip.New(sc, []sip.TrunkConfig{tr})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestServerOpts(t, nil, WithWebRTC(eng), WithSIP(phones))
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		e.srv.metrics.reg.Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// TestGrafanaDashboard: every PromQL expression of docs/grafana/segue.json
// names only series the gateway exports (histograms by their _bucket,
// _sum and _count), and the dashboard covers calls, call quality, setup
// time, chats, agents, trunk state and video.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "segue.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana/segue.json: %v", err)
	}
	exported := exportedSeries(t)
	if !exported["segue_calls_total"] || !exported["segue_video_sessions_active"] || !exported["segue_trunk_registered"] {
		t.Fatalf("the registry's names look incomplete: %v", exported)
	}
	strip := regexp.MustCompile(`"[^"]*"`) // label values and other strings
	ident := regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	used := map[string]bool{}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			named := 0
			for _, id := range ident.FindAllString(strip.ReplaceAllString(tg.Expr, ""), -1) {
				if !strings.HasPrefix(id, "segue_") {
					continue // functions, keywords, label names, $__rate_interval
				}
				named++
				name := id
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(id, suffix); ok && exported[base] {
						name = base
					}
				}
				if !exported[name] {
					t.Errorf("panel %q: %s names %s, which the gateway does not export", p.Title, tg.Expr, id)
				}
				used[name] = true
			}
			if named == 0 {
				t.Errorf("panel %q: %s names no segue series", p.Title, tg.Expr)
			}
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard has no expressions")
	}
	for _, want := range []string{
		"segue_calls_active", "segue_calls_total", "segue_call_setup_seconds", "segue_call_loss_percent", "segue_call_jitter_ms",
		"segue_conversations_active", "segue_messages_total", "segue_agents", "segue_trunk_registered", "segue_trunk_reachable",
		"segue_video_sessions_active", "segue_video_relayed_bytes_total", "segue_video_pli_total",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not chart %s", want)
		}
	}
}
