package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/store"
)

// retentionInterval is how often the retention job runs (store.retention);
// it also runs once at start.
var retentionInterval = time.Hour

// newRetentionCounter counts what the retention job deleted, by kind.
func newRetentionCounter(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "segue_retention_deleted_total",
		Help: "Records deleted by the retention job (store.retention), by kind: conversations, messages, files, recordings, calls.",
	}, []string{"kind"})
	for _, k := range []string{"conversations", "messages", "files", "recordings", "calls"} {
		c.WithLabelValues(k)
	}
	reg.MustRegister(c)
	return c
}

// runRetention deletes, once, the closed conversations last changed more
// than store.retention days before now, with everything they hold, and
// logs what went. It does nothing when retention is 0.
func (s *Server) runRetention(ctx context.Context, now time.Time) (store.Deleted, error) {
	days := s.cfg.Store.Retention
	if days <= 0 {
		return store.Deleted{}, nil
	}
	cutoff := now.Add(-time.Duration(days) * 24 * time.Hour)
	start := time.Now()
	d, err := s.store.DeleteBefore(ctx, cutoff)
	for kind, n := range map[string]int{"conversations": d.Conversations, "messages": d.Messages, "files": d.Files,
		"recordings": d.Recordings, "calls": d.Calls} {
		s.retentionDeleted.WithLabelValues(kind).Add(float64(n))
	}
	if err != nil {
		s.log.Error("retention: run failed", "cutoff", cutoff, "err", err, "conversations", d.Conversations)
		return d, err
	}
	s.log.Info("retention: run", "days", days, "cutoff", cutoff.Format(time.RFC3339), "conversations", d.Conversations,
		"messages", d.Messages, "files", d.Files, "recordings", d.Recordings, "calls", d.Calls, "took", time.Since(start).Round(time.Millisecond))
	return d, nil
}

// retentionLoop runs the retention job at start and every
// retentionInterval until ctx ends.
func (s *Server) retentionLoop(ctx context.Context) {
	if s.cfg.Store.Retention <= 0 {
		return
	}
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		_, _ = s.runRetention(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
