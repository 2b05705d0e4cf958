package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
)

// InviteHandler decides what to do with an inbound call. It runs on its
// own goroutine and may block until it answers (InboundCall.Answer) or
// rejects the call; ctx ends when the caller cancels, the server stops or
// the call has rung for three minutes.
// Returning without answering rejects the call: with the code of a
// *StatusError, 486 for ErrBusy, 503 for ErrLimit, 480 otherwise.
type InviteHandler func(ctx context.Context, in *InboundCall) error

// Option configures a Server.
type Option func(*Server) error

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) error {
		if l == nil {
			return errors.New("sip: nil logger")
		}
		s.log = l
		return nil
	}
}

// WithMaxCalls sets the global concurrent call limit (limits.max_calls);
// 0 means no limit.
func WithMaxCalls(n int) Option {
	return func(s *Server) error {
		if n < 0 {
			return errors.New("sip: max calls must not be negative")
		}
		s.maxCalls = n
		return nil
	}
}

// WithInviteHandler sets the handler for inbound calls (see OnInvite).
func WithInviteHandler(h InviteHandler) Option {
	return func(s *Server) error { s.onInvite = h; return nil }
}

// WithPortRest sets how long a released RTP port rests before reuse
// (default 5 s).
func WithPortRest(d time.Duration) Option {
	return func(s *Server) error { s.portRest = d; return nil }
}

// WithRTCPInterval sets how often each call sends an RTCP sender report
// (default 5 s, RFC 3550 §6.2's minimum).
func WithRTCPInterval(d time.Duration) Option {
	return func(s *Server) error {
		if d < frameDuration {
			return errors.New("sip: rtcp interval below 20 ms")
		}
		s.rtcpEvery = int(d / frameDuration)
		return nil
	}
}

// WithTLSConfig sets the base of the client TLS configuration used
// toward tls trunks (for example a private RootCAs pool, or client
// certificates). Certificates are still checked per trunk (tls_server_name,
// tls_insecure_skip_verify), against its RootCAs. Server certificates for
// tls listeners come from Config.TLSCert and TLSKey.
func WithTLSConfig(c *tls.Config) Option {
	return func(s *Server) error { s.clientTLS = c; return nil }
}

// Server is the SIP user agent: listeners, trunk registration and
// keepalive, outbound Dial and inbound calls. Create it with New and run
// it with Run; Dial works while Run is running.
type Server struct {
	cfg Config
	log *slog.Logger
	// table is the trunk list in force: read it with trunkTable, swap
	// it whole with UpdateTrunks (trunks.go); never changed in place.
	table     atomic.Pointer[trunkTable]
	updateMu  sync.Mutex // one UpdateTrunks at a time
	maxCalls  int
	portRest  time.Duration
	rtcpEvery int // send loop ticks between RTCP reports
	clientTLS *tls.Config

	mu       sync.Mutex
	onInvite InviteHandler
	regHold  RegistrationHold
	calls    map[string]*Call
	active   int
	running  bool
	closing  bool
	ctx      context.Context
	addrs    map[string]netip.AddrPort
	host     string // advertised host for Contact and SDP
	mediaIP  netip.Addr
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	clients  map[string]*sipgo.Client
	pool     *portPool
	ready    chan struct{}
	bg       sync.WaitGroup
	// trunkLoops are the trunks' register and OPTIONS loops.
	trunkLoops sync.WaitGroup
	foreign    foreignCounter // media packets dropped for their source
	auth       *inboundAuth

	dropped   atomic.Uint64 // requests from outsiders refused or dropped
	outsiders *sourceLimiter
	pinMu     sync.Mutex
	pins      map[netip.Addr]int // sources of inbound_auth calls in progress
}

// New checks the configuration and builds a Server. It does no I/O.
// cfg and trunks must have had ApplyDefaults called.
func New(cfg Config, trunks []TrunkConfig, opts ...Option) (*Server, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	s := &Server{
		cfg: cfg, log: slog.New(slog.DiscardHandler),
		portRest: 5 * time.Second, rtcpEvery: rtcpEvery, calls: map[string]*Call{}, ready: make(chan struct{}),
		addrs: map[string]netip.AddrPort{}, clients: map[string]*sipgo.Client{},
		auth: newInboundAuth(), outsiders: newSourceLimiter(outsiderRate, outsiderBurst, outsiderSources),
		pins: map[netip.Addr]int{},
	}
	table, err := buildTrunkTable(trunks, nil)
	if err != nil {
		errs = append(errs, err)
	}
	s.table.Store(table)
	for _, o := range opts {
		if err := o(s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.pool = newPortPool(cfg.RTPPortRange[0], cfg.RTPPortRange[1], s.portRest)
	return s, nil
}

// OnInvite sets the handler for inbound calls. Without one, inbound
// INVITEs are answered 480. Safe to call at any time.
func (s *Server) OnInvite(h InviteHandler) {
	s.mu.Lock()
	s.onInvite = h
	s.mu.Unlock()
}

// Ready is closed once Run has bound every listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound address of the first listener of transport
// ("udp", "tcp" or "tls"), valid after Ready.
func (s *Server) Addr(transport string) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[transport]
}

// Refused returns how many requests (and stray responses) from unknown
// sources were dropped, refused with 403 or challenged with 401, for
// metrics.
func (s *Server) Refused() uint64 { return s.dropped.Load() }

// ForeignPackets returns how many RTP and RTCP packets the server's calls
// have dropped so far because they came from another address than the
// far end's (see doc.go, "Media sources"), for metrics.
func (s *Server) ForeignPackets() (rtp, rtcp uint64) {
	return s.foreign.rtp.Load(), s.foreign.rtcp.Load()
}

// ActiveCalls returns the number of calls in progress, ringing included.
func (s *Server) ActiveCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Run listens, registers trunks, keeps them alive and serves calls until
// ctx ends. On the way out it hangs up every call, un-registers and waits
// for its goroutines.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("sip: server already running")
	}
	s.running = true
	s.mu.Unlock()

	// Before any listener: the read filter needs the trunks' addresses.
	s.resolveTrunkHosts(ctx)
	transportLog := slog.New(newQuietTransportLog(s.log.Handler())).With("layer", "sip_transport")
	uaOpts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent(s.cfg.UserAgent),
		sipgo.WithUserAgentTransportLayerOptions(sipmsg.WithTransportLayerLogger(transportLog), sipmsg.WithTransportLayerReadFilter(s.readFilter)),
		sipgo.WithUserAgentTransactionLayerOptions(sipmsg.WithTransactionLayerLogger(s.log.With("layer", "sip_transaction"))),
	}
	uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(s.clientTLSConfig()))
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		return fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(s.log))
	if err != nil {
		ua.Close()
		return fmt.Errorf("sip: server: %w", err)
	}
	s.registerHandlers(srv)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var serveWG sync.WaitGroup
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, l := range s.cfg.Listen {
		tr, addr, _ := ParseListen(l)
		switch tr {
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				closeAll()
				ua.Close()
				return fmt.Errorf("sip: listen %s: %w", l, err)
			}
			closers = append(closers, pc.Close)
			s.setAddr("udp", pc.LocalAddr())
			serveWG.Add(1)
			go func() { defer serveWG.Done(); _ = srv.ServeUDP(pc) }()
		case "tcp", "tls":
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				closeAll()
				ua.Close()
				return fmt.Errorf("sip: listen %s: %w", l, err)
			}
			closers = append(closers, ln.Close)
			s.setAddr(tr, ln.Addr())
			if tr == "tls" {
				cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
				if err != nil {
					closeAll()
					ua.Close()
					return fmt.Errorf("sip: tls certificate: %w", err)
				}
				tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
				serveWG.Add(1)
				go func() { defer serveWG.Done(); _ = srv.ServeTLS(tln) }()
			} else {
				serveWG.Add(1)
				go func() { defer serveWG.Done(); _ = srv.ServeTCP(ln) }()
			}
		}
	}
	waitServing(ua, s.cfg.Listen)
	s.mu.Lock()
	s.ua, s.srv, s.ctx = ua, srv, runCtx
	s.host, s.mediaIP = s.pickAddresses()
	for _, tr := range []string{"udp", "tcp", "tls"} {
		opts := []sipgo.ClientOption{sipgo.WithClientLogger(s.log), sipgo.WithClientNAT()}
		if a, ok := s.addrs[tr]; ok && tr == "udp" {
			opts = append(opts, sipgo.WithClientAddr(a.String()))
		}
		opts = append(opts, sipgo.WithClientHostname(s.host))
		if a, ok := s.addrs[tr]; ok {
			opts = append(opts, sipgo.WithClientPort(int(a.Port())))
		}
		cli, err := sipgo.NewClient(ua, opts...)
		if err != nil {
			s.mu.Unlock()
			closeAll()
			ua.Close()
			return fmt.Errorf("sip: client: %w", err)
		}
		if a, ok := s.addrs[tr]; ok && tr == "udp" {
			cli.TxRequester = &fromListener{ua: ua, laddr: sipmsg.Addr{IP: a.Addr().AsSlice(), Port: int(a.Port())}}
		}
		s.clients[tr] = cli
	}
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("sip server started", "listen", s.cfg.Listen, "contact_host", s.host, "trunks", len(s.trunkTable().order))
	s.warnWeakTrunks()

	s.mu.Lock()
	for _, tr := range s.trunkTable().order {
		s.startTrunkLoopsLocked(tr)
	}
	s.mu.Unlock()

	<-ctx.Done()
	s.log.Info("sip server stopping")
	s.mu.Lock()
	s.closing = true
	calls := make([]*Call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	s.mu.Unlock()
	var hang sync.WaitGroup
	for _, c := range calls {
		hang.Add(1)
		go func() { defer hang.Done(); c.Close() }()
	}
	hang.Wait()
	stop()
	s.updateMu.Lock() // no update starts loops from here on
	s.trunkLoops.Wait()
	s.updateMu.Unlock()
	s.bg.Wait()
	closeAll()
	ua.Close()
	serveWG.Wait()
	s.log.Info("sip server stopped")
	return nil
}

func (s *Server) setAddr(tr string, a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.addrs[tr]; !ok {
		s.addrs[tr] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
}

// pickAddresses chooses the host advertised in Contact/Via and the IP put
// in SDP: public_address when set, else the first listener's specific IP,
// else the local address of the route toward the first trunk.
func (s *Server) pickAddresses() (string, netip.Addr) {
	var listenIP netip.Addr
	for _, tr := range []string{"udp", "tcp", "tls"} {
		if a, ok := s.addrs[tr]; ok && !a.Addr().IsUnspecified() {
			listenIP = a.Addr()
			break
		}
	}
	mediaIP := listenIP
	if !mediaIP.IsValid() {
		mediaIP = outboundIP(s.trunkTable().order)
	}
	if s.cfg.PublicAddress != "" {
		if ip, err := netip.ParseAddr(s.cfg.PublicAddress); err == nil {
			return s.cfg.PublicAddress, ip
		}
		return s.cfg.PublicAddress, mediaIP
	}
	return mediaIP.String(), mediaIP
}

func outboundIP(trunks []*trunk) netip.Addr {
	for _, tr := range trunks {
		c, err := net.Dial("udp", net.JoinHostPort(tr.host, strconv.Itoa(tr.port)))
		if err != nil {
			continue
		}
		ap, err := netip.ParseAddrPort(c.LocalAddr().String())
		c.Close()
		if err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

// rtpBindIP is where RTP sockets bind: the listener IP when specific, else all.
func (s *Server) rtpBindIP() netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tr := range []string{"udp", "tcp", "tls"} {
		if a, ok := s.addrs[tr]; ok {
			return a.Addr()
		}
	}
	return netip.IPv4Unspecified()
}

func (s *Server) client(transport string) *sipgo.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[transport]
}

// contactFor returns our Contact for requests and responses on tr.
func (s *Server) contactFor(tr *trunk) *sipmsg.ContactHeader {
	return s.contactOn(tr, tr.transport)
}

// contactOn returns our Contact for a dialog on transport (udp, tcp or
// tls): the listener of that transport when there is one.
func (s *Server) contactOn(tr *trunk, transport string) *sipmsg.ContactHeader {
	transport = strings.ToLower(transport)
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: tr.fromUser(), Host: uriHost(s.host)}}
	if a, ok := s.addrs[transport]; ok {
		h.Address.Port = int(a.Port())
	} else if a, ok := s.addrs["udp"]; ok {
		h.Address.Port = int(a.Port())
	}
	if transport != "udp" {
		h.Address.UriParams = sipmsg.NewParams()
		h.Address.UriParams.Add("transport", transport)
	}
	return h
}

// uriHost brackets an IPv6 address for use in a URI.
func uriHost(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

func (s *Server) dialogUA(tr *trunk) *sipgo.DialogUA {
	return s.dialogUAOn(tr, tr.transport)
}

func (s *Server) dialogUAOn(tr *trunk, transport string) *sipgo.DialogUA {
	transport = strings.ToLower(transport)
	return &sipgo.DialogUA{Client: s.client(transport), ContactHDR: *s.contactOn(tr, transport)}
}

// acquire takes a call slot on tr and globally; release gives it back.
func (s *Server) acquire(tr *trunk) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || !s.running {
		return nil, ErrClosed
	}
	if s.maxCalls > 0 && s.active >= s.maxCalls {
		return nil, fmt.Errorf("%w: %d calls in progress (limits.max_calls)", ErrLimit, s.active)
	}
	if tr.cfg.MaxCalls > 0 && tr.active >= tr.cfg.MaxCalls {
		return nil, fmt.Errorf("%w: %d calls on trunk %s", ErrLimit, tr.active, tr.cfg.Name)
	}
	s.active++
	tr.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.active--
			tr.active--
			s.mu.Unlock()
		})
	}, nil
}

func (s *Server) track(c *Call) { s.trackAs(c, c.ID()) }

func (s *Server) trackAs(c *Call, callID string) {
	s.mu.Lock()
	s.calls[callID] = c
	s.mu.Unlock()
}

// forget removes every Call-ID that routes to c.
func (s *Server) forget(c *Call) {
	s.mu.Lock()
	for id, v := range s.calls {
		if v == c {
			delete(s.calls, id)
		}
	}
	s.mu.Unlock()
}

func (s *Server) forgetID(c *Call, id string) {
	s.mu.Lock()
	if s.calls[id] == c {
		delete(s.calls, id)
	}
	s.mu.Unlock()
}

func (s *Server) lookup(callID string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[callID]
}

// goBackground runs f on a goroutine Run waits for.
func (s *Server) goBackground(f func()) {
	s.bg.Add(1)
	go func() { defer s.bg.Done(); f() }()
}

// newMedia opens an RTP session on the server's port range for a call on
// tr, which decides where media may come from (symmetric_rtp,
// allow_inbound_from).
func (s *Server) newMedia(log *slog.Logger, tr *trunk) (*rtpSession, error) {
	policy := sourcePolicy{symmetric: tr.cfg.SymmetricRTP, allowed: tr.allows}
	m, err := newRTPSession(log, s.pool, s.rtpBindIP(), policy, &s.foreign)
	if err != nil {
		return nil, err
	}
	m.rtcpEvery = s.rtcpEvery
	return m, nil
}

func (s *Server) newSessionID() uint64 { return rand.Uint64() >> 2 }

func newCallID() string { return uuid.NewString() }

// fromListener makes every UDP request, in-dialog ones and ACK included,
// leave from the listening socket, so that the far end's replies and
// requests reach us at the address in Via and Contact (symmetric
// signalling through NAT). sipgo sets the local address only on requests
// it builds from scratch.
type fromListener struct {
	ua    *sipgo.UserAgent
	laddr sipmsg.Addr
}

func (f *fromListener) Request(ctx context.Context, req *sipmsg.Request) (sipmsg.ClientTransaction, error) {
	if req.Laddr.IP == nil {
		f.laddr.Copy(&req.Laddr)
	}
	if req.IsAck() {
		return nil, f.ua.TransportLayer().WriteMsg(req)
	}
	return f.ua.TransactionLayer().Request(ctx, req)
}

// waitServing waits (briefly) until sipgo has taken over the UDP sockets,
// so that the first request we send leaves from the listening socket
// instead of binding a second one to the same address.
func waitServing(ua *sipgo.UserAgent, listen []string) {
	want := 0
	for _, l := range listen {
		if tr, _, _ := ParseListen(l); tr == "udp" {
			want++
		}
	}
	pool := ua.TransportLayer().Pool("udp")
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && pool != nil && pool.Size() < want {
		time.Sleep(time.Millisecond)
	}
}
