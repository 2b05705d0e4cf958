package gateway

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/segue-rtc/segue/store"
)

// The integrations API's routes for call recordings (recordings:read)
// and for erasing a customer's data (data:erase).

// integrationRecording is a recording as the integrations API and the
// recording.ready webhook show it.
type integrationRecording struct {
	ID           string     `json:"id"`
	Conversation string     `json:"conversation"`
	Call         string     `json:"call"`
	Format       string     `json:"format"`
	Type         string     `json:"type"`
	DurationS    float64    `json:"duration_s"`
	Size         int64      `json:"size"`
	StartedBy    string     `json:"started_by,omitempty"`
	StartedAt    time.Time  `json:"started_at"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`
	// URL fetches the recording with a recordings:read key.
	URL string `json:"url"`
}

// recordingURL is where an integration fetches recording id.
func (s *Server) recordingURL(id string) string {
	return strings.TrimSuffix(s.cfg.HTTP.PublicURL, "/") + "/api/v1/integrations/recordings/" + id
}

func (s *Server) toIntegrationRecording(r *store.Recording) integrationRecording {
	return integrationRecording{ID: r.ID, Conversation: r.ConversationID, Call: r.CallID, Format: r.Format, Type: r.Type,
		DurationS: r.Duration.Seconds(), Size: r.Size, StartedBy: r.StartedBy, StartedAt: r.StartedAt,
		EndedAt: optTime(r.EndedAt), URL: s.recordingURL(r.ID)}
}

// integrationRecordings lists a conversation's recordings, oldest first.
func (s *Server) integrationRecordings(w http.ResponseWriter, r *http.Request, _ *apiKey) error {
	_, c, err := s.storedConversation(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	recs, err := s.store.Recordings(r.Context(), c.ID)
	if err != nil {
		return err
	}
	out := make([]integrationRecording, 0, len(recs))
	for _, rec := range recs {
		out = append(out, s.toIntegrationRecording(rec))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"recordings": out})
}

// integrationRecordingFile sends a recording's file; Range requests are
// answered with the part asked for (http.ServeContent, RFC 9110 section
// 14), so that a long recording can be fetched in pieces or resumed.
func (s *Server) integrationRecordingFile(w http.ResponseWriter, r *http.Request, _ *apiKey) error {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 {
		return ErrNotFound
	}
	rec, rc, err := s.OpenRecording(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	now := time.Now()
	setDeadlines(w, now.Add(requestReadTimeout), now.Add(transferWindow(rec.Size)+requestWriteTimeout))
	h := w.Header()
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": rec.ID + "." + rec.Format}))
	h.Set("Content-Type", rec.Type)
	h.Set("Content-Security-Policy", fileCSP)
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", rec.StartedAt, rc)
	return nil
}

// erasureReply says what an erasure removed, and which conversations it
// left because they are still open.
type erasureReply struct {
	Conversations   int      `json:"conversations"`
	Messages        int      `json:"messages"`
	Files           int      `json:"files"`
	Recordings      int      `json:"recordings"`
	Calls           int      `json:"calls"`
	ConversationIDs []string `json:"conversation_ids"`
	Open            []string `json:"open"`
}

// integrationErase erases a customer's closed conversations, with their
// messages, files, recordings and call records, as `segue data erase`
// does; conversations still open are listed and kept.
func (s *Server) integrationErase(w http.ResponseWriter, r *http.Request, key *apiKey) error {
	var body struct {
		CustomerID string `json:"customer_id"`
		Email      string `json:"email"`
	}
	if err := decodeJSON(r, 1<<10, &body); err != nil {
		return err
	}
	body.CustomerID, body.Email = strings.TrimSpace(body.CustomerID), strings.TrimSpace(body.Email)
	switch {
	case body.CustomerID == "" && body.Email == "":
		return badParam("customer_id", "give customer_id or email")
	case len(body.CustomerID) > 256:
		return badParam("customer_id", "longer than 256 bytes")
	case len(body.Email) > 256:
		return badParam("email", "longer than 256 bytes")
	}
	d, err := s.store.EraseCustomer(r.Context(), body.CustomerID, body.Email)
	if err != nil {
		return err
	}
	// An audit line: who erased how much; never the customer's e-mail.
	s.log.Info("integration erased a customer's data", "key", key.name, "by_customer_id", body.CustomerID != "",
		"by_email", body.Email != "", "conversations", d.Conversations, "messages", d.Messages, "files", d.Files,
		"recordings", d.Recordings, "calls", d.Calls, "open_kept", len(d.Open))
	out := erasureReply{Conversations: d.Conversations, Messages: d.Messages, Files: d.Files, Recordings: d.Recordings,
		Calls: d.Calls, ConversationIDs: d.ConversationIDs, Open: d.Open}
	if out.ConversationIDs == nil {
		out.ConversationIDs = []string{}
	}
	if out.Open == nil {
		out.Open = []string{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"erased": out})
}
