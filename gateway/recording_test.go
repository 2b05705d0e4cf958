package gateway

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/recording"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestRecordingConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if q := cfg.Queues[0]; q.Recording != RecordingOff || q.RecordingAnnouncement != AnnouncementOff || cfg.Recording.Format != "ogg" {
		t.Errorf("defaults: %q %q %q", q.Recording, q.RecordingAnnouncement, cfg.Recording.Format)
	}
	doc := strings.Replace(validYAML, `    dial: "sip:600@pbx.example.com"`, `    dial: "sip:600@pbx.example.com"
    recording: sometimes
    recording_announcement: song`, 1) + "recording:\n  format: mp3\n"
	_, err = ParseConfig([]byte(doc), testEnv)
	for _, want := range []string{
		`queues[0].recording: "sometimes" is not one of off, always, on_demand`,
		`queues[0].recording_announcement: "song" is not one of off, tone`,
		`recording.format: "mp3" is not one of ogg, wav`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	doc = strings.Replace(validYAML, `    dial: "sip:600@pbx.example.com"`, `    dial: "sip:600@pbx.example.com"
    recording: on_demand
    recording_announcement: tone`, 1) + "recording:\n  format: wav\n"
	if _, err := ParseConfig([]byte(doc), testEnv); err != nil {
		t.Errorf("valid recording keys refused: %v", err)
	}
}

// TestRecordTapAnnounces: the tap copies a leg's audio to the recording
// and mixes the announcement tone into what it passes on, for its half
// second only.
func TestRecordTapAnnounces(t *testing.T) {
	v := &voiceCall{}
	n := int(announceDuration * recording.Rate / time.Second)
	v.announceLeft = [2]int{n, n}
	out := audiotest.NewRecorder(8000)
	tap := recTap{PCMWriter: out, v: v, right: true}
	silence := make(transcode.PCM16, 160)
	for range 50 {
		if err := tap.WriteSample(silence); err != nil {
			t.Fatal(err)
		}
	}
	got := out.Samples()
	tone, after := got[:n], got[n:]
	if f := audiotest.PeakFrequency(tone, 8000); math.Abs(f-announceHz) > 10 {
		t.Errorf("announcement at %.0f Hz, want %d", f, announceHz)
	}
	if l := audiotest.Level(tone); l < -18 || l > -12 {
		t.Errorf("announcement at %.1f dBFS, want about -15", l)
	}
	if l := audiotest.Level(after); l > -90 {
		t.Errorf("the tone went on after its half second: %.1f dBFS", l)
	}
	if v.announceLeft[0] != n {
		t.Error("the tap toward the customer used the phone side's announcement")
	}
	if !strings.HasPrefix(tap.String(), "RecordTap(phone) -> ") {
		t.Errorf("String() = %q", tap.String())
	}
}

// TestRecordingOnDemand: in an on_demand queue only the agent holding the
// conversation starts and stops a recording; both sides see it in the call
// frames, the file is stored and listed, and the ready hook hears of it.
func TestRecordingOnDemand(t *testing.T) {
	phone := newFakeLeg()
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	peers := &fakePeers{}
	ready := make(chan store.Recording, 1)
	// A webhook whose loop never runs: recording.ready must be in the
	// outbox by the time the recording is finished.
	e := voiceServer(t, phones, peers, func(c *Config) {
		c.Queues[0].Recording = RecordingOnDemand
		withHook("http://127.0.0.1:9/never", 10, "recording.ready")(c)
	}, WithRecordingReady(func(r store.Recording) { ready <- r }))
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	bws, _ := e.agentWS(e.login("bob"))
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)

	// No call yet.
	aws.send(map[string]any{"type": "recording.start", "conversation_id": id})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "no_call" {
		t.Fatalf("recording without a call: %v", f)
	}
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	cws.expect("rtc.answer")
	if c := waitCall(t, cws, callConnected); c.Recording || c.RecordingMode != RecordingOnDemand {
		t.Fatalf("connected call: %+v", c)
	}
	waitCall(t, aws, callConnected)

	// Neither the customer nor another agent may start it.
	cws.send(map[string]any{"type": "recording.start", "conversation_id": id})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "bad_frame" {
		t.Errorf("the customer's recording.start: %v", f)
	}
	bws.send(map[string]any{"type": "recording.start", "conversation_id": id})
	if f := bws.expect("error"); decode[string](t, f["code"]) != "forbidden" {
		t.Errorf("bob's recording.start: %v", f)
	}
	aws.send(map[string]any{"type": "recording.start", "conversation_id": id})
	if c := waitCall(t, cws, callConnected); !c.Recording {
		t.Fatalf("the customer was not told: %+v", c)
	}
	aws.send(map[string]any{"type": "recording.start", "conversation_id": id})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "recording_running" {
		t.Errorf("a second start: %v", f)
	}
	peers.last().play(audiotest.Tone(8000, 1000, 0.5, 200*time.Millisecond))
	phone.play(audiotest.Tone(8000, 440, 0.5, 200*time.Millisecond))
	bws.send(map[string]any{"type": "recording.stop", "conversation_id": id})
	if f := bws.expect("error"); decode[string](t, f["code"]) != "forbidden" {
		t.Errorf("bob's recording.stop: %v", f)
	}
	aws.send(map[string]any{"type": "recording.stop", "conversation_id": id})
	var r store.Recording
	select {
	case r = <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the ready hook was not called")
	}
	if r.ConversationID != id || r.StartedBy != "alice" || r.EndedAt.IsZero() || r.Type != "audio/ogg" || r.Size == 0 {
		t.Errorf("ready: %+v", r)
	}
	due, err := e.st.DueWebhookEvents(context.Background(), "", []string{"crm"}, time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0].Type != "recording.ready" || due[0].ConversationID != id {
		t.Fatalf("outbox once the recording is ready: %v %v", due, err)
	}
	var ev struct {
		Data struct {
			Recording integrationRecording `json:"recording"`
		} `json:"data"`
	}
	if err := json.Unmarshal(due[0].Body, &ev); err != nil {
		t.Fatal(err)
	}
	if got := ev.Data.Recording; got.ID != r.ID || got.Size != r.Size || got.EndedAt == nil || !got.EndedAt.Equal(r.EndedAt) {
		t.Errorf("recording.ready shows %+v, the recording is %+v", got, r)
	}
	stored, f, err := e.srv.OpenRecording(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := recording.Read(f); err != nil {
		t.Errorf("the stored file: %v", err)
	}
	f.Close()
	if stored.ID != r.ID {
		t.Errorf("OpenRecording: %+v", stored)
	}
	if list, err := e.srv.Recordings(context.Background(), id); err != nil || len(list) != 1 {
		t.Errorf("Recordings: %v %v", list, err)
	}
	aws.send(map[string]any{"type": "recording.stop", "conversation_id": id})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "not_recording" {
		t.Errorf("a second stop: %v", f)
	}
	cws.send(map[string]any{"type": "voice.hangup"})
	waitCall(t, cws, callEnded)
}
