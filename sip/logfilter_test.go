package sip

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestQuietTransportLog(t *testing.T) {
	var buf bytes.Buffer
	h := newQuietTransportLog(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := time.Unix(1000, 0)
	h.state.now = func() time.Time { return now }
	log := slog.New(h).With("layer", "sip_transport")
	payload := "INVITE \x1b[31mEVIL\r\n" + strings.Repeat("A", 2000)
	for range 5 {
		log.Error(sipgoParseFailed, "data", payload, "error", errors.New("bad start line"))
	}
	now = now.Add(parseLogEvery)
	log.Error(sipgoParseFailed, "data", payload, "error", errors.New("bad start line"))
	log.Error(sipgoFilterRefuse, "laddr", "x", "raddr", "y", "error", errFiltered)
	log.Info("other record", "k", "v")
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 2 parse warnings, the filter at debug and the other record:\n%s", len(lines), out)
	}
	for _, l := range lines[:2] {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "layer=sip_transport") {
			t.Errorf("parse failure line %q: want WARN with the logger's attributes", l)
		}
	}
	if !strings.Contains(lines[0], "suppressed=0") || !strings.Contains(lines[1], "suppressed=4") {
		t.Errorf("suppressed counts: %q, %q", lines[0], lines[1])
	}
	if strings.Contains(out, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") || strings.Contains(out, "\x1b") {
		t.Errorf("payload leaked into the log:\n%s", out)
	}
	if !strings.Contains(lines[2], "level=DEBUG") || !strings.Contains(lines[3], "other record") {
		t.Errorf("other records: %q %q", lines[2], lines[3])
	}
}
