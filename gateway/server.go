package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
)

// Server is the gateway: the HTTP and WebSocket API, the widget and
// console assets, and the live conversation state.
type Server struct {
	cfg     *Config
	store   store.Store
	log     *slog.Logger
	metrics *metrics
	hub     *hub
	limiter *ipLimiter
	// loginsByAddr and loginsByAgent count failed sign-ins (auth.go).
	loginsByAddr, loginsByAgent *slidingLimiter
	// trusted are http.trusted_proxies, parsed.
	trusted []netip.Prefix
	handler http.Handler
	admin   http.Handler
	phones  phoneSystem
	peers   peerFactory
	trunks  func() []sip.TrunkState
	// super holds the supervisors' boards and monitored calls
	// (supervisor.go, monitor.go).
	super supervision
	// updateTrunks puts a reloaded trunk list in force (WithSIP).
	updateTrunks func(context.Context, []sip.TrunkConfig) (sip.TrunkChange, error)
	wg           sync.WaitGroup // voice calls in progress

	// callsByAddr and callsByConv count the calls customers start
	// (limits.calls_per_ip_per_hour, limits.calls_per_conversation_per_hour).
	callsByAddr, callsByConv *slidingLimiter
	// sockets counts open WebSockets per client address and per agent
	// (limits.max_sockets_per_ip, limits.max_sockets_per_agent).
	sockets *socketSlots
	// load measures the process's load for call admission (load.go).
	load loadSource
	// integ is the integrations API's keys and limits, webhooks the
	// webhook outbox and its delivery (integrations.go, webhooks.go).
	integ    *integrations
	webhooks *webhooks

	// recordingReady is called when a call recording is complete
	// (WithRecordingReady); recordingsStarted counts recordings.
	recordingReady    RecordingReady
	recordingsStarted prometheus.Counter
	// retentionDeleted counts what store.retention deleted (retention.go).
	retentionDeleted *prometheus.CounterVec
	// configFile is what a reload reads (WithConfigFile, reload.go).
	configFile string
	// node is the gateway's part in a cluster, or nil (cluster.go).
	node *node

	mu        sync.Mutex
	addr      net.Addr
	adminAddr net.Addr
	ready     chan struct{}
}

// New checks its input and builds the server; it does no I/O. st is owned
// by the caller, who closes it after Run returns.
func New(cfg *Config, st store.Store, log *slog.Logger, opts ...Option) (*Server, error) {
	if cfg == nil || st == nil || log == nil {
		return nil, errors.New("gateway: New needs a config, a store and a logger")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: invalid config: %w", err)
	}
	m := newMetrics()
	s := &Server{cfg: cfg, store: st, log: log, metrics: m, hub: newHub(cfg, st, log, m),
		limiter:      newIPLimiter(cfg.Limits.NewChatsPerIPPerMinute, time.Minute),
		loginsByAddr: newSlidingLimiter(maxFailedLoginsPerAddr, loginWindow), loginsByAgent: newSlidingLimiter(maxFailedLoginsPerAgent, loginWindow),
		trusted: cfg.HTTP.trustedPrefixes(), ready: make(chan struct{})}
	s.callsByAddr = newSlidingLimiter(cfg.Limits.callsPerIP(), time.Hour)
	s.callsByConv = newSlidingLimiter(cfg.Limits.callsPerConversation(), time.Hour)
	s.sockets = newSocketSlots()
	s.load = newLoadMonitor()
	s.integ = newIntegrations(cfg, m)
	s.webhooks = newWebhooks(cfg, st, log, m)
	s.hub.webhooks = s.webhooks
	for _, o := range opts {
		o(s)
	}
	s.metrics.registerLoad(s.load)
	s.recordingsStarted = newRecordingsCounter(s.metrics.reg)
	s.retentionDeleted = newRetentionCounter(s.metrics.reg)
	s.hub.voice = s.phones != nil && s.peers != nil
	s.hub.video = s.peers != nil
	s.hub.onBoard = s.boardChanged
	s.hub.node = s.node
	if s.node != nil {
		s.webhooks.claimant = s.node.inc
	}
	s.handler = s.routes()
	s.admin = s.adminRoutes()
	if sp, ok := s.phones.(sipPhones); ok && s.node != nil {
		// One node of the cluster at a time registers each trunk.
		sp.srv.SetRegistrationHold(s.node.holdTrunk)
	}
	return s, nil
}

// Option configures a Server.
type Option func(*Server)

// WithSIP lets the server place voice calls through srv.
func WithSIP(srv *sip.Server) Option {
	return func(s *Server) {
		s.phones = sipPhones{srv: srv}
		srv.OnInvite(func(ctx context.Context, in *sip.InboundCall) error { return s.handleInvite(ctx, sipInbound{in}) })
		s.trunks = srv.TrunkStatus
		s.updateTrunks = srv.UpdateTrunks
		s.metrics.reg.MustRegister(trunkCollector{srv.TrunkStatus})
		s.metrics.reg.MustRegister(foreignMediaCollector{srv.ForeignPackets})
		s.metrics.reg.MustRegister(sipRefusedCounter(srv.Refused))
	}
}

// withPhones and withPeers plug in other implementations (tests).
func withPhones(p phoneSystem) Option { return func(s *Server) { s.phones = p } }
func withPeers(p peerFactory) Option  { return func(s *Server) { s.peers = p } }

// Handler is the server's HTTP handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves the operational endpoints of http.admin_listen:
// /metrics, the detailed /readyz and /debug/pprof.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Load restores the live state from the store. Run calls it; tests that
// use Handler directly call it themselves.
func (s *Server) Load(ctx context.Context) error { return s.hub.load(ctx) }

// Addr is the address the server listens on, once Ready is closed.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// AdminAddr is the address of the admin listener once Ready is closed,
// or nil when http.admin_listen is "off".
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adminAddr
}

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run restores the live state, ends the calls the last run left up,
// listens on http.listen and serves until ctx ends; then it drains
// within http.drain_timeout: new chats and calls are refused, calls in
// progress hear a notice and are hung up, every WebSocket is closed with
// a reason the clients show, and requests in flight finish.
func (s *Server) Run(ctx context.Context) error {
	// A cluster node takes its conversations over one by one as their
	// customers come back (adopt); the store's open conversations and
	// unfinished calls belong to every node.
	if s.node == nil {
		if err := s.Load(ctx); err != nil {
			return fmt.Errorf("gateway: restore state: %w", err)
		}
		if err := s.recoverCalls(ctx); err != nil {
			return fmt.Errorf("gateway: calls left up by the last run: %w", err)
		}
	} else {
		nctx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
		nodeDone := make(chan error, 1)
		go func() { nodeDone <- s.node.run(nctx) }()
		defer func() {
			stopNode()
			if err := <-nodeDone; err != nil {
				s.log.Error("cluster", "err", err)
			}
		}()
		// Nothing is served before this node is alive in the lease store,
		// so it claims no conversation another node may take.
		select {
		case <-s.node.ready:
		case err := <-nodeDone:
			nodeDone <- err
			return fmt.Errorf("gateway: cluster: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ln, err := net.Listen("tcp", s.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", s.cfg.HTTP.Listen, err)
	}
	var adminLn net.Listener
	if s.cfg.HTTP.adminEnabled() {
		if adminLn, err = net.Listen("tcp", s.cfg.HTTP.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("gateway: listen %s (http.admin_listen): %w", s.cfg.HTTP.AdminListen, err)
		}
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	if adminLn != nil {
		s.adminAddr = adminLn.Addr()
	}
	s.mu.Unlock()
	// No server-wide ReadTimeout or WriteTimeout: each route sets its own
	// deadlines (httpguard.go), since a 10 MiB upload, a WebSocket and a
	// page need different ones.
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	limits := &connLimiter{max: s.cfg.HTTP.maxConnsPerIP(), trusted: s.trustedProxy, refused: s.metrics.connsRefused.Inc, open: map[string]int{}}
	public := limits.limitListener(ln)
	errc := make(chan error, 2)
	go func() {
		if s.cfg.HTTP.TLSCert != "" {
			errc <- srv.ServeTLS(public, s.cfg.HTTP.TLSCert, s.cfg.HTTP.TLSKey)
		} else {
			errc <- srv.Serve(public)
		}
	}()
	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = &http.Server{
			Handler:           s.admin,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		go func() { errc <- adminSrv.Serve(adminLn) }()
		s.log.Info("admin listening", "addr", adminLn.Addr().String())
	}
	s.log.Info("http listening", "addr", ln.Addr().String(), "public_url", s.cfg.HTTP.PublicURL)
	close(s.ready)
	expiryCtx, stopExpiry := context.WithCancel(ctx)
	expiryDone := make(chan struct{})
	go func() { defer close(expiryDone); s.hub.runExpiry(expiryCtx) }()
	defer func() { stopExpiry(); <-expiryDone }()
	hooksDone := make(chan struct{})
	go func() { defer close(hooksDone); s.webhooks.run(expiryCtx) }()
	defer func() { stopExpiry(); <-hooksDone }()
	retentionDone := make(chan struct{})
	go func() { defer close(retentionDone); s.retentionLoop(expiryCtx) }()
	defer func() { stopExpiry(); <-retentionDone }()
	if m, ok := s.load.(*loadMonitor); ok {
		loadDone := make(chan struct{})
		go func() { defer close(loadDone); m.Run(expiryCtx) }()
		defer func() { stopExpiry(); <-loadDone }()
	}
	select {
	case err := <-errc:
		_ = srv.Close()
		if adminSrv != nil {
			_ = adminSrv.Close()
		}
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	// Drain: refuse what is new at once (503), end the calls with a
	// notice and BYE, then tell the sockets and close, all within
	// http.drain_timeout; the calls get all but a second of it.
	drain := s.cfg.HTTP.DrainTimeout
	s.log.Info("shutting down", "drain_timeout", drain)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	s.hub.startDrain()
	cctx, stopCalls := context.WithTimeout(sctx, drain-time.Second)
	s.drainCalls(cctx)
	stopCalls()
	s.hub.shutdown("server restarting")
	s.hangupAll(errShutdown)
	s.closeMedia()
	err = srv.Shutdown(sctx)
	if adminSrv != nil {
		err = errors.Join(err, adminSrv.Shutdown(sctx))
		<-errc
	}
	s.wg.Wait()
	<-errc
	if err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	return nil
}

// ipLimiter allows n events per window per key (fixed windows, pruned as
// they pass, so memory stays bounded by recent distinct keys).
type ipLimiter struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	start  time.Time
	counts map[string]int
}

func newIPLimiter(n int, window time.Duration) *ipLimiter {
	return &ipLimiter{n: n, window: window, counts: map[string]int{}}
}

// blocked reports whether key has used up its events in this window,
// without counting one.
func (l *ipLimiter) blocked(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.window {
		l.start, l.counts = now, map[string]int{}
	}
	return l.counts[key] >= l.n, l.window - now.Sub(l.start)
}

// allow counts one event for key and reports whether it is within the
// limit, and if not, how long until the window resets.
func (l *ipLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.window {
		l.start, l.counts = now, map[string]int{}
	}
	if l.counts[key] >= l.n {
		return false, l.window - now.Sub(l.start)
	}
	l.counts[key]++
	return true, 0
}
