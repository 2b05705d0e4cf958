package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/recording"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/transcode"
)

// Values of queues[].recording.
const (
	RecordingOff      = "off"
	RecordingAlways   = "always"
	RecordingOnDemand = "on_demand"
)

// Values of queues[].recording_announcement.
const (
	AnnouncementOff  = "off"
	AnnouncementTone = "tone"
)

// RecordingConfig is the "recording" section: how call recordings are
// written. Which calls are recorded is each queue's recording setting.
type RecordingConfig struct {
	// Format is "ogg" (Opus in Ogg, the default: about 4 kB a second) or
	// "wav" (16-bit PCM: 32 kB a second).
	Format string `yaml:"format"`
}

func (c *RecordingConfig) applyDefaults() {
	if c.Format == "" {
		c.Format = recording.FormatOgg
	}
}

func (c *RecordingConfig) validate() []error {
	switch c.Format {
	case recording.FormatOgg, recording.FormatWAV:
		return nil
	}
	return []error{fmt.Errorf("recording.format: %q is not one of ogg, wav", c.Format)}
}

// validateRecordingQueue checks a queue's recording keys; p is its path.
func validateRecordingQueue(p string, q QueueConfig) []error {
	var errs []error
	switch q.Recording {
	case RecordingOff, RecordingAlways, RecordingOnDemand:
	default:
		errs = append(errs, fmt.Errorf("%s.recording: %q is not one of off, always, on_demand", p, q.Recording))
	}
	switch q.RecordingAnnouncement {
	case AnnouncementOff, AnnouncementTone:
	default:
		errs = append(errs, fmt.Errorf("%s.recording_announcement: %q is not one of off, tone", p, q.RecordingAnnouncement))
	}
	return errs
}

var (
	errRecordingOff      = errf(http.StatusForbidden, "recording_unavailable", "this queue's calls are not recorded")
	errRecordingAlways   = errf(http.StatusConflict, "recording_always", "this queue records every call: the recording cannot be stopped")
	errRecordingNoCall   = errf(http.StatusConflict, "no_call", "there is no connected call to record")
	errRecordingRunning  = errf(http.StatusConflict, "recording_running", "the call is already being recorded")
	errRecordingNotFound = errf(http.StatusConflict, "not_recording", "the call is not being recorded")
)

// RecordingReady is called once a recording is complete on disk (the
// agent stopped it or the call ended), with its metadata. Webhooks
// (recording.ready) hang on it. It must not block.
type RecordingReady func(store.Recording)

// WithRecordingReady sets the function called when a recording is ready.
func WithRecordingReady(f RecordingReady) Option {
	return func(s *Server) { s.recordingReady = f }
}

// callRecording is a recording in progress on a call.
type callRecording struct {
	meta   store.Recording
	rec    *recording.Recorder
	file   store.RecordingFile
	cancel context.CancelFunc
	done   chan struct{}
}

// announceTone is what queues[].recording_announcement: tone plays to
// both sides when a recording starts: half a second at 1400 Hz, the
// frequency of the recorder warning tone many telephone networks use.
const (
	announceHz       = 1400
	announceDuration = 500 * time.Millisecond
	announceAmp      = 0.25
)

// recTap passes a leg's audio on to the other leg and copies it to the
// call's recording while one runs. It also mixes the recording
// announcement into what it passes on.
type recTap struct {
	transcode.PCMWriter
	v     *voiceCall
	right bool
}

func (t recTap) WriteSample(s transcode.PCM16) error {
	v := t.v
	v.recMu.Lock()
	r := v.rec
	left := &v.announceLeft[0]
	if t.right {
		left = &v.announceLeft[1]
	}
	var mixed transcode.PCM16
	if *left > 0 && t.SampleRate() == recording.Rate {
		mixed = make(transcode.PCM16, len(s))
		start := int(announceDuration*recording.Rate/time.Second) - *left
		for i, x := range s {
			y := float64(x)
			if n := start + i; n < int(announceDuration*recording.Rate/time.Second) {
				y += announceAmp * 32767 * math.Sin(2*math.Pi*announceHz*float64(n)/recording.Rate)
			}
			mixed[i] = int16(max(-32768, min(32767, y)))
		}
		*left = max(0, *left-len(s))
		s = mixed
	}
	v.recMu.Unlock()
	if r != nil && t.SampleRate() == recording.Rate {
		if t.right {
			_ = r.rec.Right().WriteSample(s)
		} else {
			_ = r.rec.Left().WriteSample(s)
		}
	}
	return t.PCMWriter.WriteSample(s)
}

func (t recTap) String() string {
	side := "customer"
	if t.right {
		side = "phone"
	}
	return "RecordTap(" + side + ") -> " + t.PCMWriter.String()
}

// startRecording starts recording v, a connected call; by is the agent
// who asked, "" for a queue that records every call.
func (s *Server) startRecording(v *voiceCall, by string) error {
	v.mu.Lock()
	connected := v.phone != nil && (v.state == callConnected || v.state == callHeld)
	v.mu.Unlock()
	if !connected {
		return errRecordingNoCall
	}
	s.hub.mu.Lock()
	format := s.cfg.Recording.Format // a reload may change it
	s.hub.mu.Unlock()
	v.recMu.Lock()
	if v.rec != nil {
		v.recMu.Unlock()
		return errRecordingRunning
	}
	meta := store.Recording{ID: newID("r_"), ConversationID: v.cv.c.ID, CallID: v.id, Format: format,
		Type: recording.ContentType(format), StartedBy: by, StartedAt: time.Now().UTC()}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(v.ctx), 5*time.Second)
	defer cancel()
	file, err := s.store.CreateRecording(ctx, &meta)
	if err != nil {
		v.recMu.Unlock()
		return fmt.Errorf("gateway: start recording: %w", err)
	}
	rec, err := recording.New(file, recording.Options{Format: format,
		Comments: []string{"SEGUE_CONVERSATION=" + meta.ConversationID, "SEGUE_CALL=" + v.id, "DATE=" + meta.StartedAt.Format(time.RFC3339)}})
	if err != nil {
		v.recMu.Unlock()
		file.Close()
		return fmt.Errorf("gateway: start recording: %w", err)
	}
	rctx, stop := context.WithCancel(context.Background())
	cr := &callRecording{meta: meta, rec: rec, file: file, cancel: stop, done: make(chan struct{})}
	v.rec = cr
	if v.recAnnounce == AnnouncementTone {
		n := int(announceDuration * recording.Rate / time.Second)
		v.announceLeft = [2]int{n, n}
	}
	v.recMu.Unlock()
	go func() {
		defer close(cr.done)
		if err := rec.Run(rctx); err != nil {
			s.log.Error("recording: failed", "conv", meta.ConversationID, "call", v.id, "recording", meta.ID, "err", err)
		}
	}()
	s.recordingsStarted.Inc()
	s.log.Info("recording: started", "conv", meta.ConversationID, "call", v.id, "recording", meta.ID, "by", by, "format", format)
	s.hub.event(ctx, v.cv, "recording.started", "This call is being recorded", map[string]string{"call": v.id, "recording": meta.ID})
	v.publish()
	return nil
}

// stopRecording ends v's recording, if one runs, and makes it ready.
func (s *Server) stopRecording(v *voiceCall) error {
	v.recMu.Lock()
	cr := v.rec
	v.rec = nil
	v.announceLeft = [2]int{}
	v.recMu.Unlock()
	if cr == nil {
		return errRecordingNotFound
	}
	cr.cancel()
	<-cr.done
	meta := cr.meta
	meta.Duration = cr.rec.Duration()
	err := cr.rec.Close()
	err = errors.Join(err, cr.file.Sync(), cr.file.Close())
	ctx, cancel := context.WithTimeout(context.WithoutCancel(v.ctx), 5*time.Second)
	defer cancel()
	s.hub.mu.Lock()
	snap := v.cv.c
	s.hub.mu.Unlock()
	// The recording's end and its recording.ready events are stored
	// together.
	if ferr := s.webhooks.finishRecording(ctx, &snap, &meta, func(r *store.Recording) any { return s.toIntegrationRecording(r) }); ferr != nil {
		err = errors.Join(err, ferr)
	}
	if err != nil {
		s.log.Error("recording: not finished cleanly", "conv", meta.ConversationID, "call", v.id, "recording", meta.ID, "err", err)
	}
	s.log.Info("recording: ready", "conv", meta.ConversationID, "call", v.id, "recording", meta.ID,
		"duration", meta.Duration, "bytes", meta.Size)
	s.hub.event(ctx, v.cv, "recording.stopped", "Recording stopped", map[string]any{"call": v.id, "recording": meta.ID,
		"duration_s": int(meta.Duration.Seconds())})
	v.publish()
	if s.recordingReady != nil {
		s.recordingReady(meta)
	}
	return nil
}

// recording reports whether v is being recorded.
func (v *voiceCall) recording() bool {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	return v.rec != nil
}

// recordFrame handles the console's recording.start and recording.stop
// for the conversation the agent holds (agentConv checked that).
func (s *Server) recordFrame(cv *conv, start bool, agentID string) error {
	s.hub.mu.Lock()
	v := cv.voice
	mode := s.hub.queues[cv.c.Queue].Recording
	s.hub.mu.Unlock()
	if v != nil {
		mode = v.recMode
	}
	switch mode {
	case RecordingOff:
		return errRecordingOff
	case RecordingAlways:
		if !start {
			return errRecordingAlways
		}
	}
	if v == nil {
		return errRecordingNoCall
	}
	if start {
		return s.startRecording(v, agentID)
	}
	return s.stopRecording(v)
}

// wireRecording is a recording as the console sees it in a call record.
type wireRecording struct {
	ID        string     `json:"id"`
	URL       string     `json:"url"`
	Type      string     `json:"type"`
	DurationS float64    `json:"duration_s"`
	Size      int64      `json:"size"`
	StartedBy string     `json:"started_by,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

func toWireRecording(r *store.Recording) wireRecording {
	return wireRecording{ID: r.ID, URL: "/api/v1/recordings/" + r.ID, Type: r.Type, DurationS: r.Duration.Seconds(),
		Size: r.Size, StartedBy: r.StartedBy, StartedAt: r.StartedAt, EndedAt: optTime(r.EndedAt)}
}

// getRecording serves a recording's file to an agent who may read its
// conversation, with the same checks as a file download. Customers do
// not get recordings from here.
func (s *Server) getRecording(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	setDeadlines(w, now.Add(requestReadTimeout), now.Add(requestWriteTimeout))
	rec, err := s.store.Recording(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	_, _, who, err := s.authorize(r, rec.ConversationID)
	if err != nil {
		return err
	}
	if who.role != store.RoleAgent {
		return ErrForbidden
	}
	rc, err := s.store.OpenRecording(rec)
	if err != nil {
		return err
	}
	defer rc.Close()
	setDeadlines(w, now.Add(requestReadTimeout), now.Add(transferWindow(rec.Size)+requestWriteTimeout))
	h := w.Header()
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": rec.ID + "." + rec.Format}))
	h.Set("Content-Type", rec.Type)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", fileCSP)
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", rec.StartedAt, rc)
	return nil
}

// OpenRecording returns a recording's metadata and its file, for the
// integrations API (recordings:read): it checks no access itself, the
// caller has. The caller closes the file.
func (s *Server) OpenRecording(ctx context.Context, id string) (*store.Recording, io.ReadSeekCloser, error) {
	rec, err := s.store.Recording(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	rc, err := s.store.OpenRecording(rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, rc, nil
}

// Recordings lists a conversation's recordings, for the integrations API.
func (s *Server) Recordings(ctx context.Context, conversationID string) ([]*store.Recording, error) {
	return s.store.Recordings(ctx, conversationID)
}

// newRecordingsCounter counts the recordings started.
func newRecordingsCounter(reg *prometheus.Registry) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "segue_recordings_total", Help: "Call recordings started."})
	reg.MustRegister(c)
	return c
}
