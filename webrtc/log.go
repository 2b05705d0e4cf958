package webrtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Levels below slog.LevelDebug for pion's chattier output, so that a
// handler at Debug shows pion's debug lines but not its traces.
const (
	levelPionTrace = slog.LevelDebug - 8
	levelPionDebug = slog.LevelDebug - 4
)

// pionLoggerFactory adapts pion's logging to slog, one level down: pion
// writes Info lines on every internal state change and Warn lines in
// normal operation (a connectivity check before the first remote
// candidate, a stream closed during teardown), several per second while a
// call sets up. Its Info and Warn go to Debug and its Error to Warn; the
// lifecycle lines at Info are the ones this package writes itself.
type pionLoggerFactory struct {
	log *slog.Logger
}

var _ logging.LoggerFactory = pionLoggerFactory{}

// NewLogger returns the logger of one pion scope, such as "ice" or "pc".
func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct {
	log *slog.Logger
}

func (l pionLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) emitf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l pionLogger) Trace(msg string)                  { l.emit(levelPionTrace, msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.emitf(levelPionTrace, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.emit(levelPionDebug, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.emitf(levelPionDebug, format, args...) }
func (l pionLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Error(msg string)                  { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.emitf(slog.LevelWarn, format, args...) }
