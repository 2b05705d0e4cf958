//go:build e2e

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
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
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: net.JoinHostPort(phone.IP, strconv.Itoa(phone.Port))}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: phone.URI()}},
	}, withYAML("", "", "    recording: always\n", ""))

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
}
