package sip

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// parseLogEvery is how often, at most, an unparsable message is logged.
const parseLogEvery = 10 * time.Second

// Messages sipgo's transport layer logs at ERROR for input anyone can send.
const (
	sipgoParseFailed  = "failed to parse"
	sipgoFilterRefuse = "Read filter error"
)

// quietTransportLog wraps the handler given to sipgo's transport layer.
// sipgo logs every unparsable datagram at ERROR with its whole payload, so
// that anyone can fill the log with text of their choosing; here such
// records become one Warn per parseLogEvery, with the number left out
// since the last one and a short quoted prefix of the payload. A stream
// connection closed by the read filter is logged at Debug. Other records
// pass through unchanged.
type quietTransportLog struct {
	next  slog.Handler
	state *parseLogState
}

// parseLogState is shared by a quietTransportLog and its derived handlers.
type parseLogState struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
	now        func() time.Time
}

func newQuietTransportLog(next slog.Handler) *quietTransportLog {
	return &quietTransportLog{next: next, state: &parseLogState{now: time.Now}}
}

func (h *quietTransportLog) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *quietTransportLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &quietTransportLog{next: h.next.WithAttrs(as), state: h.state}
}

func (h *quietTransportLog) WithGroup(name string) slog.Handler {
	return &quietTransportLog{next: h.next.WithGroup(name), state: h.state}
}

func (h *quietTransportLog) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case sipgoFilterRefuse:
		if !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		d := slog.NewRecord(r.Time, slog.LevelDebug, "sip: stream connection from a refused source closed", r.PC)
		r.Attrs(func(a slog.Attr) bool { d.AddAttrs(a); return true })
		return h.next.Handle(ctx, d)
	case sipgoParseFailed:
	default:
		return h.next.Handle(ctx, r)
	}
	st := h.state
	st.mu.Lock()
	now := st.now()
	if !st.last.IsZero() && now.Sub(st.last) < parseLogEvery {
		st.suppressed++
		st.mu.Unlock()
		return nil
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	st.mu.Unlock()
	if !h.next.Enabled(ctx, slog.LevelWarn) {
		return nil
	}
	w := slog.NewRecord(r.Time, slog.LevelWarn, "sip: unparsable message dropped", r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "data":
			w.AddAttrs(slog.String("prefix", quotedPrefix(a.Value.String(), 32)))
		case "error":
			w.AddAttrs(slog.String("error", quotedPrefix(a.Value.String(), 120)))
		}
		return true
	})
	w.AddAttrs(slog.Int("suppressed", suppressed), slog.Duration("window", parseLogEvery))
	return h.next.Handle(ctx, w)
}

// quotedPrefix returns at most n bytes of s as an ASCII Go string
// literal, so that control characters and terminal escapes stay inert.
func quotedPrefix(s string, n int) string {
	if len(s) > n {
		return strconv.QuoteToASCII(s[:n]) + "..."
	}
	return strconv.QuoteToASCII(s)
}
