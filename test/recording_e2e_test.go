//go:build e2e

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/recording"
	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestRecordingAlways: in a queue with recording: always, a call between
// a customer (a pion peer saying 1 kHz) and the queue's phone (baresip
// saying 440 Hz) is recorded by the gateway. The customer's widget is
// told while it runs; once the call ends the recording is listed with the
// call, served to an agent of the queue as audio/ogg, and holds the
// customer on the left and the phone on the right for as long as the call
// was connected. Customers and strangers do not get it.
func TestRecordingAlways(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, 440, 0.5, 60*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "600", src)
	hooks := newHookReceiver(t)
	hooks.mu.Lock()
	hooks.failing = false
	hooks.mu.Unlock()
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: net.JoinHostPort(phone.IP, strconv.Itoa(phone.Port))}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: phone.URI()}},
	}, withYAML("", "", "    recording: always\n", ""), withIntegrationsYAML(apiKeysYAML()+dataKeysYAML()+fmt.Sprintf(`  webhooks:
    - {name: crm, url: %q, events: [call.ringing, call.connected, call.ended, recording.ready], secret: %q}
`, hooks.srv.URL, e2eHookKey)))

	customer := startPionVoiceCall(t, g)
	connected := time.Now()
	// The customer is told: the call frames say it is recorded.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for told := false; !told; {
		f := customer.next(t, ctx)
		if str(f["type"]) == "call" {
			var c struct {
				Recording     bool   `json:"recording"`
				RecordingMode string `json:"recording_mode"`
			}
			_ = json.Unmarshal(f["call"], &c)
			told = c.Recording && c.RecordingMode == "always"
		}
	}
	time.Sleep(4 * time.Second)
	customer.hangup(t)
	callLasted := time.Since(connected)

	// The recording, listed with its call, for an agent of the queue.
	alice := g.login(t, "alice")
	var calls struct {
		Calls []struct {
			ID         string `json:"id"`
			Recordings []struct {
				ID        string  `json:"id"`
				URL       string  `json:"url"`
				Type      string  `json:"type"`
				DurationS float64 `json:"duration_s"`
				EndedAt   *string `json:"ended_at"`
			} `json:"recordings"`
		} `json:"calls"`
	}
	waitFor(t, "the recording to be listed", func() error {
		alice.json(http.MethodGet, "/api/v1/conversations/"+customer.conv.ID+"/calls", nil, http.StatusOK, &calls)
		if len(calls.Calls) != 1 || len(calls.Calls[0].Recordings) != 1 || calls.Calls[0].Recordings[0].EndedAt == nil {
			return fmt.Errorf("calls: %+v", calls)
		}
		return nil
	})
	rec := calls.Calls[0].Recordings[0]
	if rec.Type != "audio/ogg" || rec.URL != "/api/v1/recordings/"+rec.ID {
		t.Errorf("recording listed as %+v", rec)
	}

	req, _ := http.NewRequest(http.MethodGet, g.URL+rec.URL, nil)
	req.Header.Set("Origin", g.Origin())
	res, err := alice.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "audio/ogg" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET %s: %d %v", rec.URL, res.StatusCode, res.Header)
	}
	size := body.Len()
	left, right, err := recording.Read(&body)
	if err != nil {
		t.Fatal(err)
	}
	got := time.Duration(len(left)) * time.Second / recording.Rate
	t.Logf("recording %s: %v of audio (%d bytes), listed as %.1f s; the call was connected for about %v", rec.ID, got, size, rec.DurationS, callLasted)
	if d := got - callLasted; d < -1500*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("the recording lasts %v, the call about %v", got, callLasted)
	}
	if math.Abs(rec.DurationS-got.Seconds()) > 0.5 {
		t.Errorf("listed duration %.1f s, the file holds %v", rec.DurationS, got)
	}
	// The middle of the call: each side on its own channel.
	mid := func(s transcode.PCM16) transcode.PCM16 { return s[len(s)/4 : len(s)*3/4] }
	l, r := mid(left), mid(right)
	t.Logf("left: %.0f Hz at %.1f dBFS; right: %.0f Hz at %.1f dBFS", audiotest.PeakFrequency(l, 8000), audiotest.Level(l),
		audiotest.PeakFrequency(r, 8000), audiotest.Level(r))
	if f := audiotest.PeakFrequency(l, 8000); math.Abs(f-bleedCustomerHz) > 10 {
		t.Errorf("left channel peak %.0f Hz, want the customer's %.0f", f, bleedCustomerHz)
	}
	if f := audiotest.PeakFrequency(r, 8000); math.Abs(f-bleedPhoneHz) > 10 {
		t.Errorf("right channel peak %.0f Hz, want the phone's %.0f", f, bleedPhoneHz)
	}
	for name, s := range map[string]transcode.PCM16{"left": l, "right": r} {
		if lv := audiotest.Level(s); lv < -20 || lv > 0 {
			t.Errorf("%s channel at %.1f dBFS, want about -6", name, lv)
		}
	}
	if x := audiotest.GoertzelLevel(l, 8000, bleedPhoneHz) - audiotest.Level(l); x > -20 {
		t.Errorf("the phone's tone is in the customer's channel at %.1f dB", x)
	}

	// The transcript says so, both ways.
	var texts []string
	for _, m := range alice.messages(customer.conv.ID) {
		texts = append(texts, m.Text)
	}
	if all := strings.Join(texts, "|"); !strings.Contains(all, "This call is being recorded") || !strings.Contains(all, "Recording stopped") {
		t.Errorf("transcript: %q", texts)
	}

	// Only agents: not the customer of the conversation, nor anyone
	// without a session.
	if code, _ := customer.cust.do(http.MethodGet, rec.URL, nil, ""); code != http.StatusForbidden {
		t.Errorf("the customer got the recording: %d", code)
	}
	if code, _ := g.client(t).do(http.MethodGet, rec.URL, nil, ""); code != http.StatusUnauthorized {
		t.Errorf("a stranger got the recording: %d", code)
	}
	if code, _ := alice.do(http.MethodGet, "/api/v1/recordings/r_..%2Fsegue.db", nil, ""); code != http.StatusNotFound {
		t.Errorf("a made-up recording id: %d", code)
	}
	var customerCalls struct {
		Calls []map[string]json.RawMessage `json:"calls"`
	}
	customer.cust.json(http.MethodGet, "/api/v1/conversations/"+customer.conv.ID+"/calls", nil, http.StatusOK, &customerCalls)
	if len(customerCalls.Calls) != 1 || customerCalls.Calls[0]["recordings"] != nil {
		t.Errorf("the customer's list of calls: %v", customerCalls.Calls)
	}
	if m := metricsOf(t, g); m["segue_recordings_total"] != 1 {
		t.Errorf("segue_recordings_total = %v", m["segue_recordings_total"])
	}
	recordingWebhooksAndAPI(t, g, hooks, customer.conv.ID, rec.ID, size)
}

// recordingWebhooksAndAPI checks what a CRM hears of the recorded call
// and gets with its keys: the call events with the call's quality, then
// recording.ready, whose URL gives the file to a recordings:read key,
// whole and by ranges, as docs/openapi.yaml says, and to no other key.
func recordingWebhooksAndAPI(t *testing.T, g *gateway, hooks *hookReceiver, convID, recID string, size int) {
	t.Helper()
	type event struct {
		Type string `json:"type"`
		Data struct {
			Call        string   `json:"call"`
			Direction   string   `json:"direction"`
			Target      string   `json:"target"`
			Codec       string   `json:"codec"`
			Cause       string   `json:"cause"`
			By          string   `json:"by"`
			DurationS   *float64 `json:"duration_s"`
			MOS         *float64 `json:"mos"`
			LossPercent *float64 `json:"loss_percent"`
			JitterMS    *float64 `json:"jitter_ms"`
			Recording   struct {
				ID           string  `json:"id"`
				Conversation string  `json:"conversation"`
				Call         string  `json:"call"`
				Format       string  `json:"format"`
				DurationS    float64 `json:"duration_s"`
				Size         int     `json:"size"`
				URL          string  `json:"url"`
			} `json:"recording"`
		} `json:"data"`
	}
	got := map[string]event{}
	var order []string
	waitFor(t, "the call's webhook events", func() error {
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		clear(got)
		order = order[:0]
		for _, h := range hooks.got {
			var ev event
			if err := json.Unmarshal(h.Raw, &ev); err != nil {
				return err
			}
			if h.Conversation.ID != convID {
				return fmt.Errorf("an event of %s", h.Conversation.ID)
			}
			if _, dup := got[ev.Type]; !dup {
				order = append(order, ev.Type)
			}
			got[ev.Type] = ev
		}
		if len(got) < 4 {
			return fmt.Errorf("events %v", order)
		}
		return nil
	})
	t.Logf("webhook events: %v; call.ended %+v", order, got["call.ended"].Data)
	if i := slices.Index(order, "call.ringing"); i != 0 || order[1] != "call.connected" {
		t.Errorf("event order %v", order)
	}
	ring, conn, end, ready := got["call.ringing"].Data, got["call.connected"].Data, got["call.ended"].Data, got["recording.ready"].Data
	if ring.Call == "" || ring.Direction != "outbound" || ring.Target != "600" || conn.Call != ring.Call || end.Call != ring.Call {
		t.Errorf("call.ringing %+v, call.connected %+v", ring, conn)
	}
	if conn.Codec != "PCMU" && conn.Codec != "PCMA" {
		t.Errorf("call.connected codec %q", conn.Codec)
	}
	if end.Cause == "" || end.By != "customer" || end.Codec != conn.Codec || end.DurationS == nil || *end.DurationS < 3 ||
		end.MOS == nil || *end.MOS < 3.5 || end.LossPercent == nil || *end.LossPercent > 5 || end.JitterMS == nil {
		t.Errorf("call.ended %+v", end)
	}
	r := ready.Recording
	if r.ID != recID || r.Conversation != convID || r.Call != ring.Call || r.Format != "ogg" || r.Size != size || r.DurationS < 3 ||
		r.URL != g.URL+"/api/v1/integrations/recordings/"+recID {
		t.Errorf("recording.ready %+v", r)
	}
	// The calls as the API lists them carry the quality.
	one := integrationCall(t, g, "GET", "/api/v1/integrations/conversations/"+convID, e2eKeyReader, "")
	var full struct {
		Calls []struct {
			ID      string `json:"id"`
			Quality struct {
				MOS         *float64 `json:"mos"`
				LossPercent *float64 `json:"loss_percent"`
				JitterMS    *float64 `json:"jitter_ms"`
			} `json:"quality"`
		} `json:"calls"`
	}
	if err := json.Unmarshal(one.body, &full); err != nil || len(full.Calls) != 1 || full.Calls[0].ID != ring.Call ||
		full.Calls[0].Quality.MOS == nil || full.Calls[0].Quality.LossPercent == nil || full.Calls[0].Quality.JitterMS == nil {
		t.Errorf("the API's calls: %s", one.body)
	}

	// The file, with the documented answers.
	_, check, _ := openAPIChecker(t, g)
	path := strings.TrimPrefix(r.URL, g.URL)
	dl := integrationCall(t, g, "GET", path, e2eKeyRec, "")
	check(dl, 200)
	if len(dl.body) != size || dl.header.Get("Content-Type") != "audio/ogg" {
		t.Errorf("fetched %d bytes of %s, want %d of audio/ogg", len(dl.body), dl.header.Get("Content-Type"), size)
	}
	if left, right, err := recording.Read(bytes.NewReader(dl.body)); err != nil || len(left) == 0 || len(left) != len(right) {
		t.Errorf("the fetched recording: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, r.URL, nil)
	req.Header.Set("Authorization", "Bearer "+e2eKeyRec)
	req.Header.Set("Range", "bytes=0-99")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusPartialContent || !bytes.Equal(part, dl.body[:100]) {
		t.Errorf("range: %d, %d bytes", res.StatusCode, len(part))
	}
	check(integrationCall(t, g, "GET", path, e2eKeyReader, ""), 403)
	check(integrationCall(t, g, "GET", path, "", ""), 401)
	list := check(integrationCall(t, g, "GET", "/api/v1/integrations/conversations/"+convID+"/recordings", e2eKeyRec, ""), 200)
	if recs, _ := list["recordings"].([]any); len(recs) != 1 {
		t.Errorf("recordings: %v", list)
	}
}
