package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus series, on a registry of its own so
// that several servers can run in one process (tests).
type metrics struct {
	reg              *prometheus.Registry
	convActive       *prometheus.GaugeVec
	convTotal        prometheus.Counter
	messages         *prometheus.CounterVec
	agents           *prometheus.GaugeVec
	wsConns          *prometheus.GaugeVec
	httpRequests     *prometheus.CounterVec
	uploads          prometheus.Counter
	rejectedOrigins  prometheus.Counter
	rateLimitedChats prometheus.Counter
	wsErrors         *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		convActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "segue_conversations_active", Help: "Open conversations by state (waiting, active).",
		}, []string{"state"}),
		convTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_conversations_total", Help: "Conversations started.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_messages_total", Help: "Transcript entries stored, by sender role and kind.",
		}, []string{"role", "kind"}),
		agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "segue_agents", Help: "Configured agents by presence (available, away, offline).",
		}, []string{"state"}),
		wsConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "segue_websocket_connections", Help: "Open WebSocket connections by role.",
		}, []string{"role"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		uploads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_uploads_total", Help: "Files accepted.",
		}),
		rejectedOrigins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_rejected_origins_total", Help: "Requests refused for their Origin.",
		}),
		rateLimitedChats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_rate_limited_total", Help: "New conversations refused by limits.new_chats_per_ip_per_minute.",
		}),
		wsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_websocket_errors_total", Help: "Error frames sent, by code.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(m.convActive, m.convTotal, m.messages, m.agents, m.wsConns, m.httpRequests,
		m.uploads, m.rejectedOrigins, m.rateLimitedChats, m.wsErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
