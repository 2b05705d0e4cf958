package webrtc

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPionLogLevels(t *testing.T) {
	var buf bytes.Buffer
	f := pionLoggerFactory{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l := f.NewLogger("ice")
	l.Trace("trace")
	l.Debugf("debug %d", 1)
	l.Info("info")
	l.Warnf("warn %s", "x")
	l.Errorf("error %s", "y")
	got := buf.String()
	for _, quiet := range []string{"trace", "debug 1", "msg=info", "warn x"} {
		if strings.Contains(got, quiet) {
			t.Errorf("%q logged at Info level: %s", quiet, got)
		}
	}
	if !strings.Contains(got, `level=WARN msg="error y" pion=ice`) {
		t.Errorf("pion error not logged as a warning with its scope: %q", got)
	}
}
