package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"regexp"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/webrtc"
)

// metrics are the gateway's Prometheus series, on a registry of its own so
// that several servers can run in one process (tests).
type metrics struct {
	reg              *prometheus.Registry
	convActive       *prometheus.GaugeVec
	convTotal        prometheus.Counter
	messages         *prometheus.CounterVec
	agents           *prometheus.GaugeVec
	agentsFull       prometheus.Gauge
	wsConns          *prometheus.GaugeVec
	httpRequests     *prometheus.CounterVec
	uploads          prometheus.Counter
	rejectedOrigins  prometheus.Counter
	rateLimitedChats prometheus.Counter
	wsErrors         *prometheus.CounterVec
	callsActive      prometheus.Gauge
	callsTotal       *prometheus.CounterVec
	callSetup        prometheus.Histogram
	callLoss         prometheus.Histogram
	callJitter       prometheus.Histogram
	callGatewayLoss  prometheus.Histogram
	framesDropped    *prometheus.CounterVec
	callsRefused     *prometheus.CounterVec
	flow             flowMetrics
	faults           faultMetrics
	mediaRefused     *prometheus.CounterVec
	loginsRefused    *prometheus.CounterVec
	connsRefused     prometheus.Counter
	videoSessions    prometheus.Counter
	wrapUps          *prometheus.CounterVec
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
		agentsFull: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "segue_agents_at_capacity",
			Help: "Agents holding max_chats conversations; with a cluster, those of every node (each node shows the same count).",
		}),
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
		callsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "segue_calls_active", Help: "Voice calls in progress, ringing included.",
		}),
		callsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_calls_total", Help: "Voice calls finished, by outcome.",
		}, []string{"outcome"}),
		callSetup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "segue_call_setup_seconds", Help: "From the mic click to the desk phone's answer.",
			Buckets: []float64{0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60},
		}),
		callLoss: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "segue_call_loss_percent", Help: "RTP packet loss from the phone side per finished call.",
			Buckets: []float64{0, 0.5, 1, 2, 5, 10, 20},
		}),
		callJitter: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "segue_call_jitter_ms", Help: "RTP interarrival jitter from the phone side per finished call.",
			Buckets: []float64{1, 2, 5, 10, 20, 40, 80},
		}),
		callGatewayLoss: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "segue_call_gateway_loss_percent", Help: "Share of 20 ms frames the gateway itself dropped per finished call (stalled media clock, overflowing queues), in the worse direction.",
			Buckets: []float64{0, 0.5, 1, 2, 5, 10, 20},
		}),
		framesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_media_frames_dropped_total", Help: "20 ms audio frames the gateway failed to carry on voice calls, by leg (sip, webrtc), the leg's direction (send, receive) and reason (clock_stall, queue_overflow, jitter_drop).",
		}, []string{"leg", "direction", "reason"}),
		callsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_calls_refused_total", Help: "Calls refused, by reason (ip_limit, conversation_limit, queue_policy; for capacity: max_calls, scheduler_lag, cpu).",
		}, []string{"reason"}),
		mediaRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_media_refused_total", Help: "Video starts, console joins and customer peer connections refused, by reason (video_limit, peers_per_ip, peer_starts_per_ip, queue_policy).",
		}, []string{"reason"}),
		loginsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segue_logins_refused_total", Help: "Agent sign-ins refused, by reason (bad_credentials, address_locked, agent_locked, demo_password).",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "segue_http_connections_refused_total", Help: "TCP connections closed at once for http.max_connections_per_ip.",
		}),
	}
	m.reg.MustRegister(m.loginsRefused, m.connsRefused)
	m.reg.MustRegister(m.callsRefused, m.mediaRefused, m.callsActive, m.callsTotal, m.callSetup, m.callLoss, m.callJitter, m.callGatewayLoss, m.framesDropped,
		m.convActive, m.convTotal, m.messages, m.agents, m.agentsFull, m.wsConns, m.httpRequests,
		m.uploads, m.rejectedOrigins, m.rateLimitedChats, m.wsErrors,
		// The collector's CPU (go_cpu_classes_gc_total_cpu_seconds_total)
		// beside Go's defaults: what the headroom `segue serve` picks
		// costs (docs/operations.md).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/gc/total:cpu-seconds$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, l := range frameDropLabels {
		m.framesDropped.WithLabelValues(l[0], l[1], l[2]) // every series from the start, at 0
	}
	m.flow = newFlowMetrics(m.reg)
	m.faults = newFaultMetrics(m.reg)
	m.videoSessions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "segue_video_sessions_total", Help: "Video sessions started: a conversation's customer video or console join set up while it had no video.",
	})
	m.reg.MustRegister(m.videoSessions)
	m.wrapUps = newWrapUpMetric(m.reg)
	return m
}

// trunkCollector exports each trunk's registration and keepalive state
// when scraped.
type trunkCollector struct{ states func() []sip.TrunkState }

var (
	trunkRegisteredDesc = prometheus.NewDesc("segue_trunk_registered", "1 while the trunk's REGISTER is in force (trunks that register).", []string{"trunk"}, nil)
	trunkReachableDesc  = prometheus.NewDesc("segue_trunk_reachable", "1 when the trunk answered the last OPTIONS keepalive.", []string{"trunk"}, nil)
	trunkRTTDesc        = prometheus.NewDesc("segue_trunk_options_rtt_seconds", "Round trip of the last OPTIONS keepalive.", []string{"trunk"}, nil)
	trunkCallsDesc      = prometheus.NewDesc("segue_trunk_calls_active", "Calls in progress on the trunk.", []string{"trunk"}, nil)
)

func (c trunkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- trunkRegisteredDesc
	ch <- trunkReachableDesc
	ch <- trunkRTTDesc
	ch <- trunkCallsDesc
}

func (c trunkCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, t := range c.states() {
		if t.Register {
			ch <- prometheus.MustNewConstMetric(trunkRegisteredDesc, prometheus.GaugeValue, b(t.Registered), t.Name)
		}
		if t.Options {
			ch <- prometheus.MustNewConstMetric(trunkReachableDesc, prometheus.GaugeValue, b(t.Reachable), t.Name)
			ch <- prometheus.MustNewConstMetric(trunkRTTDesc, prometheus.GaugeValue, t.OptionsRTT.Seconds(), t.Name)
		}
		ch <- prometheus.MustNewConstMetric(trunkCallsDesc, prometheus.GaugeValue, float64(t.ActiveCalls), t.Name)
	}
}

// foreignMediaCollector exports the RTP and RTCP packets the SIP side
// dropped because they came from another address than the far end's.
type foreignMediaCollector struct{ counts func() (rtp, rtcp uint64) }

var foreignMediaDesc = prometheus.NewDesc("segue_sip_rtp_foreign_packets_total",
	"RTP and RTCP packets dropped for their source: not the far end's SDP address (RTP bleed attempts, or a PBX behind NAT on a trunk without symmetric_rtp).",
	[]string{"protocol"}, nil)

func (c foreignMediaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- foreignMediaDesc }

func (c foreignMediaCollector) Collect(ch chan<- prometheus.Metric) {
	rtp, rtcp := c.counts()
	ch <- prometheus.MustNewConstMetric(foreignMediaDesc, prometheus.CounterValue, float64(rtp), "rtp")
	ch <- prometheus.MustNewConstMetric(foreignMediaDesc, prometheus.CounterValue, float64(rtcp), "rtcp")
}

// sipRefusedCounter exports the SIP requests from outside the trunks'
// allowed sources that the gateway dropped, refused or challenged.
func sipRefusedCounter(refused func() uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "segue_sip_requests_refused_total",
		Help: "SIP requests (and stray responses) from sources outside every trunk's allow_inbound_from that were dropped, refused with 403 or challenged with 401.",
	}, func() float64 { return float64(refused()) })
}

// nackCollector exports what browsers asked the gateway to resend of the
// video it sends them (RTCP NACK) and what it resent, when scraped.
type nackCollector struct{ stats func() webrtc.NACKStats }

var (
	nackRequestedDesc  = prometheus.NewDesc("segue_webrtc_nack_requested_total", "Lost video packets browsers asked the gateway to resend (RTCP NACK).", nil, nil)
	nackRefusedDesc    = prometheus.NewDesc("segue_webrtc_nack_refused_total", "Lost packets browsers asked for that were not resent, by reason (rate, budget, repeat, unavailable, no_stream).", []string{"reason"}, nil)
	retransmitPktDesc  = prometheus.NewDesc("segue_webrtc_retransmit_packets_total", "Video packets resent to browsers on their NACKs.", nil, nil)
	retransmitByteDesc = prometheus.NewDesc("segue_webrtc_retransmit_bytes_total", "Bytes of video packets resent to browsers on their NACKs.", nil, nil)
)

func (c nackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nackRequestedDesc
	ch <- nackRefusedDesc
	ch <- retransmitPktDesc
	ch <- retransmitByteDesc
}

func (c nackCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(nackRequestedDesc, prometheus.CounterValue, float64(s.Requested))
	ch <- prometheus.MustNewConstMetric(retransmitPktDesc, prometheus.CounterValue, float64(s.Resent))
	ch <- prometheus.MustNewConstMetric(retransmitByteDesc, prometheus.CounterValue, float64(s.ResentBytes))
	for reason, n := range s.Refused {
		ch <- prometheus.MustNewConstMetric(nackRefusedDesc, prometheus.CounterValue, float64(n), reason)
	}
}

// opusEffortCollector exports how the Opus encoders toward browsers
// adapt their effort to the loss browsers report (webrtc.opus_complexity:
// auto), when scraped.
type opusEffortCollector struct{ stats func() webrtc.OpusEffortStats }

var (
	opusFECActiveDesc = prometheus.NewDesc("segue_webrtc_opus_fec_active", "Calls whose Opus encoder toward the browser runs now at the quality effort with in-band FEC because the browser reported loss (webrtc.opus_complexity: auto).", nil, nil)
	opusSwitchesDesc  = prometheus.NewDesc("segue_webrtc_opus_effort_switches_total", "Changes, either way, between the cheap effort of the Opus encoder toward browsers and the quality effort with in-band FEC.", nil, nil)
)

func (c opusEffortCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- opusFECActiveDesc
	ch <- opusSwitchesDesc
}

func (c opusEffortCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(opusFECActiveDesc, prometheus.GaugeValue, float64(s.FECActive))
	ch <- prometheus.MustNewConstMetric(opusSwitchesDesc, prometheus.CounterValue, float64(s.Switches))
}

// videoSessionsGauge exports the conversations holding a video session
// slot (limits.max_video_sessions) when scraped.
func videoSessionsGauge(h *hub) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "segue_video_sessions_active", Help: "Conversations with video now (each holds one of limits.max_video_sessions).",
	}, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(h.videoSessionsLocked())
	})
}

// videoRelayCollector exports what the gateway relayed of browsers'
// video, and the key frame requests it sent their senders.
type videoRelayCollector struct{ stats func() webrtc.VideoRelayStats }

var (
	videoRelayedPacketsDesc = prometheus.NewDesc("segue_video_relayed_packets_total", "Video RTP packets relayed to browsers (one per viewer).", nil, nil)
	videoRelayedBytesDesc   = prometheus.NewDesc("segue_video_relayed_bytes_total", "Bytes of video RTP relayed to browsers, headers included; the relayed bitrate is 8 × its rate.", nil, nil)
	videoPLIDesc            = prometheus.NewDesc("segue_video_pli_total", "Key frame requests (RTCP PLI) sent to browsers that send video: viewers' PLI/FIR passed on, and the gateway's own for new viewers.", nil, nil)
)

func (c videoRelayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- videoRelayedPacketsDesc
	ch <- videoRelayedBytesDesc
	ch <- videoPLIDesc
}

func (c videoRelayCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(videoRelayedPacketsDesc, prometheus.CounterValue, float64(s.Packets))
	ch <- prometheus.MustNewConstMetric(videoRelayedBytesDesc, prometheus.CounterValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(videoPLIDesc, prometheus.CounterValue, float64(s.KeyFrameRequests))
}
